"""The run's state machine: what a start or an end does to a run row, decided in Python.

Pure: no database access. The batch applies these decisions to rows it has locked; the fast
path in ``sql`` makes the same decisions in the ``WHERE`` of conditional UPDATEs, and the
contract test holds the two to the same rows.

Status only moves forward and an older attempt can never overwrite a newer one (attempt
fencing): an attempt's end is written only while the row still says ``running`` with that
attempt's number.
"""

from __future__ import annotations

import logging
import traceback as tb
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from .. import metrics
from ..conf import jobs_settings
from ..exceptions import UnknownTaskError
from ..models import TERMINAL_STATUSES, JobRun, RunMode, RunStatus
from ..registry import Task, get_task
from ..utils import clean_text, scrub, to_json_result
from .places import worker_id

logger = logging.getLogger("fusion_jobs.runs")

TRACEBACK_LIMIT = 20_000
ERROR_LIMIT = 2_000

#: The columns a decision reads; the locked path loads only these.
LOADED_FIELDS = (
    "id",
    "status",
    "attempts",
    "lost_attempts",
    "attempt_log",
    "worker",
    "started_at",
    "published_at",
)

#: Outcomes that end the run (the fast path writes them; a retry goes through the locked path).
FINAL_OUTCOMES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.TIMED_OUT)


@dataclass
class Attempt:
    """An attempt that may run: which run, which attempt number."""

    run_id: str
    attempt: int
    task_name: str
    retries_done: int = 0


@dataclass
class Skip:
    """The message must not run; ``reason`` is logged (and recorded where it ends the run)."""

    reason: str


@dataclass
class StartOp:
    """Begin an attempt of ``run_id`` (one message delivery)."""

    run_id: str
    task_name: str
    redelivered: bool = False
    mode: str = RunMode.WORKER
    kwargs: dict[str, Any] | None = None
    queue: str = ""
    retries_done: int = 0
    outcome: Attempt | Skip | None = None


@dataclass
class EndOp:
    """End an attempt: ``succeeded``/``failed``/``timed_out``, or ``retrying`` with a next attempt time."""

    attempt: Attempt
    status: str
    result: Any = None
    error: str = ""
    traceback: str = ""
    next_attempt_at: datetime | None = None
    log_outcome: str = ""
    outcome: bool | None = None


Op = StartOp | EndOp


def run_id_of(op: Op) -> str:
    return op.run_id if isinstance(op, StartOp) else op.attempt.run_id


def describe_exception(exc: BaseException) -> tuple[str, str]:
    """(``Type: message``, traceback) with the broker password scrubbed, both length-capped.

    Never raises, and both are storable: NUL and lone surrogates (which PostgreSQL refuses, and
    would leave the run ``running``) become U+FFFD, and an exception whose ``str()`` fails is
    still described.
    """
    url = str(jobs_settings.BROKER_URL or "")
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not lose the outcome
        text = "<str() of the exception failed>"
    message = clean_text(scrub(f"{type(exc).__name__}: {text}", url))[:ERROR_LIMIT]
    trace = clean_text(scrub("".join(tb.format_exception(exc)), url))
    if len(trace) > TRACEBACK_LIMIT:
        trace = trace[: TRACEBACK_LIMIT // 2] + "\n…\n" + trace[-TRACEBACK_LIMIT // 2 :]
    return message, trace


def log_entry(row: JobRun, outcome: str, now: datetime, error: str = "") -> dict[str, Any]:
    """One element of ``attempt_log``: how the row's current attempt ended."""
    return {
        "attempt": row.attempts,
        "outcome": outcome,
        "worker": row.worker,
        "started_at": row.started_at.isoformat() if row.started_at else None,
        "ended_at": now.isoformat(),
        "error": error[:500],
    }


def log_not_recorded(attempt: Attempt) -> None:
    logger.info(
        "run %s attempt %s: outcome not recorded, a newer attempt owns the run",
        attempt.run_id,
        attempt.attempt,
    )


def new_row_for(op: StartOp, now: datetime) -> JobRun:
    """The row of a message that has none: published by another producer, or its row was pruned.

    It takes the task's limits as ``enqueue()`` would (the sweeper reads its execution timeout).
    """
    op.outcome = Attempt(op.run_id, 1, op.task_name, op.retries_done)
    try:
        task_obj: Task | None = get_task(op.task_name)
    except UnknownTaskError:
        task_obj = None
    return JobRun(
        id=op.run_id,
        task_name=op.task_name,
        queue=op.queue or "default",
        mode=op.mode,
        kwargs=op.kwargs or {},
        max_retries=task_obj.effective_max_retries if task_obj else 0,
        execution_timeout=task_obj.effective_timeout if task_obj else None,
        status=RunStatus.RUNNING,
        attempts=1,
        started_at=now,
        heartbeat_at=now,
        published_at=now,
        worker=worker_id(),
        enqueued_by="message without a run row",
    )


def apply_start(op: StartOp, row: JobRun, now: datetime) -> set[str]:
    """Decide one start against its (locked) row; sets ``op.outcome``, returns the fields changed."""
    if row.status in TERMINAL_STATUSES:
        op.outcome = Skip(f"run is already {row.status}")
        return set()
    fields: set[str] = set()
    if row.status == RunStatus.RUNNING and row.attempts > 0:
        if not op.redelivered and op.mode == RunMode.WORKER:
            op.outcome = Skip("a live attempt is already running this run (duplicate delivery)")
            return fields
        row.lost_attempts += 1
        metrics.lost_attempt(op.task_name)
        row.attempt_log = [
            *row.attempt_log,
            log_entry(row, "lost", now, "worker died mid-run (message redelivered)"),
        ]
        fields |= {"lost_attempts", "attempt_log"}
        if row.lost_attempts >= int(jobs_settings.MAX_LOST_ATTEMPTS):
            row.status = RunStatus.FAILED
            row.finished_at = now
            row.error = (
                f"WorkerLost: the worker running this task died {row.lost_attempts} times "
                f"(killed, out of memory?); giving up after FUSION_JOBS_MAX_LOST_ATTEMPTS={row.lost_attempts}"
            )
            op.outcome = Skip(f"worker lost {row.lost_attempts} times")
            return fields | {"status", "finished_at", "error"}
    row.attempts += 1
    row.status = RunStatus.RUNNING
    row.started_at = now
    row.heartbeat_at = now
    row.next_attempt_at = None
    row.worker = worker_id()
    row.progress_stage, row.progress_done, row.progress_total = "", None, None
    fields |= {
        "attempts",
        "status",
        "started_at",
        "heartbeat_at",
        "next_attempt_at",
        "worker",
        "progress_stage",
        "progress_done",
        "progress_total",
    }
    if row.published_at is None:  # it was delivered, so it was published
        row.published_at = now
        fields.add("published_at")
    op.outcome = Attempt(op.run_id, row.attempts, op.task_name, op.retries_done)
    return fields


def apply_end(op: EndOp, row: JobRun | None, now: datetime) -> set[str]:
    """Decide one end against its (locked) row; sets ``op.outcome``, returns the fields changed."""
    if row is None or row.attempts != op.attempt.attempt or row.status != RunStatus.RUNNING:
        op.outcome = False
        log_not_recorded(op.attempt)
        return set()
    row.status = op.status
    row.error, row.traceback = op.error, op.traceback
    fields = {"status", "error", "traceback"}
    if op.status == RunStatus.RETRYING:
        # The retry waits here, unpublished, until the relay publishes it at next_attempt_at:
        # never as a delayed message held unacked in a worker (RabbitMQ's consumer_timeout).
        row.next_attempt_at = op.next_attempt_at
        row.published_at = None
        row.attempt_log = [*row.attempt_log, log_entry(row, op.log_outcome or "failed", now, op.error)]
        fields |= {"next_attempt_at", "published_at", "attempt_log"}
    else:
        row.finished_at = now
        row.result = op.result
        fields |= {"finished_at", "result"}
    op.outcome = True
    return fields


def begin_inline_attempt(row: JobRun, now: datetime) -> None:
    """Give a new inline row the state its first start would: ``running``, attempt 1, this process.

    Written with its INSERT, so an inline run outside a transaction costs one write to start.
    """
    row.status = RunStatus.RUNNING
    row.attempts = 1
    row.started_at = row.heartbeat_at = row.published_at = now
    row.worker = worker_id()


def end_op_success(attempt: Attempt, result: Any) -> EndOp:
    stored = to_json_result(result, int(jobs_settings.RESULT_MAX_BYTES)) if result is not None else None
    return EndOp(attempt, RunStatus.SUCCEEDED, result=stored)


def end_op_failure(attempt: Attempt, exc: BaseException, *, status: str = RunStatus.FAILED) -> EndOp:
    error, trace = describe_exception(exc)
    return EndOp(attempt, status, error=error, traceback=trace)


def end_op_retry(attempt: Attempt, exc: BaseException, delay_seconds: float, *, outcome: str) -> EndOp:
    error, trace = describe_exception(exc)
    return EndOp(
        attempt,
        RunStatus.RETRYING,
        error=error,
        traceback=trace,
        next_attempt_at=timezone.now() + timedelta(seconds=delay_seconds),
        log_outcome=outcome,
    )
