"""Status transitions of a ``JobRun``, shared by the worker middleware and the inline backend.

Every write is conditional, so status only moves forward and an older attempt can never
overwrite a newer one (attempt fencing): an attempt's end is written only while the row still
says ``running`` with that attempt's number.
"""

from __future__ import annotations

import logging
import os
import socket
import traceback as tb
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, router, transaction
from django.db.models import F
from django.utils import timezone

from .conf import jobs_settings
from .models import TERMINAL_STATUSES, JobRun, RunMode, RunStatus
from .utils import scrub, to_json_result

logger = logging.getLogger("fusion_jobs.runs")

TRACEBACK_LIMIT = 20_000
ERROR_LIMIT = 2_000

_worker_id: str | None = None


def worker_id() -> str:
    global _worker_id
    pid = os.getpid()
    if _worker_id is None or not _worker_id.endswith(f":{pid}"):
        _worker_id = f"{socket.gethostname()}:{pid}"
    return _worker_id


def db_alias() -> str:
    return router.db_for_write(JobRun) or "default"


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


def describe_exception(exc: BaseException) -> tuple[str, str]:
    """(``Type: message``, traceback) with the broker password scrubbed, both length-capped."""
    url = str(jobs_settings.BROKER_URL or "")
    message = scrub(f"{type(exc).__name__}: {exc}", url)[:ERROR_LIMIT]
    trace = scrub("".join(tb.format_exception(exc)), url)
    if len(trace) > TRACEBACK_LIMIT:
        trace = trace[: TRACEBACK_LIMIT // 2] + "\n…\n" + trace[-TRACEBACK_LIMIT // 2 :]
    return message, trace


def _log_entry(row: JobRun, outcome: str, now: datetime, error: str = "") -> dict[str, Any]:
    return {
        "attempt": row.attempts,
        "outcome": outcome,
        "worker": row.worker,
        "started_at": row.started_at.isoformat() if row.started_at else None,
        "ended_at": now.isoformat(),
        "error": error[:500],
    }


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

_LOADED_FIELDS = (
    "id",
    "status",
    "attempts",
    "lost_attempts",
    "attempt_log",
    "worker",
    "started_at",
    "published_at",
)


def _apply_start(
    op: StartOp, row: JobRun | None, now: datetime, changed: dict[str, set[str]]
) -> JobRun | None:
    """Decide one start against its locked row; returns a row to insert when there was none."""
    if row is None:
        # A message with no row: published by another producer, or its row was pruned.
        op.outcome = Attempt(op.run_id, 1, op.task_name, op.retries_done)
        return JobRun(
            id=op.run_id,
            task_name=op.task_name,
            queue=op.queue or "default",
            mode=op.mode,
            kwargs=op.kwargs or {},
            status=RunStatus.RUNNING,
            attempts=1,
            started_at=now,
            heartbeat_at=now,
            published_at=now,
            worker=worker_id(),
            enqueued_by="message without a run row",
        )
    fields = changed.setdefault(op.run_id, set())
    if row.status in TERMINAL_STATUSES:
        op.outcome = Skip(f"run is already {row.status}")
        return None
    if row.status == RunStatus.RUNNING and row.attempts > 0:
        if not op.redelivered and op.mode == RunMode.WORKER:
            op.outcome = Skip("a live attempt is already running this run (duplicate delivery)")
            return None
        row.lost_attempts += 1
        row.attempt_log = [
            *row.attempt_log,
            _log_entry(row, "lost", now, "worker died mid-run (message redelivered)"),
        ]
        fields |= {"lost_attempts", "attempt_log"}
        if row.lost_attempts >= int(jobs_settings.MAX_LOST_ATTEMPTS):
            row.status = RunStatus.FAILED
            row.finished_at = now
            row.error = (
                f"WorkerLost: the worker running this task died {row.lost_attempts} times "
                f"(killed, out of memory?); giving up after FUSION_JOBS_MAX_LOST_ATTEMPTS={row.lost_attempts}"
            )
            fields |= {"status", "finished_at", "error"}
            op.outcome = Skip(f"worker lost {row.lost_attempts} times")
            return None
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
    return None


def _apply_end(op: EndOp, row: JobRun | None, now: datetime, changed: dict[str, set[str]]) -> None:
    if row is None or row.attempts != op.attempt.attempt or row.status != RunStatus.RUNNING:
        op.outcome = False
        logger.info(
            "run %s attempt %s: outcome not recorded, a newer attempt owns the run", *_ids(op.attempt)
        )
        return
    fields = changed.setdefault(op.attempt.run_id, set())
    row.status = op.status
    row.error, row.traceback = op.error, op.traceback
    fields |= {"status", "error", "traceback"}
    if op.status == RunStatus.RETRYING:
        row.next_attempt_at = op.next_attempt_at
        row.attempt_log = [*row.attempt_log, _log_entry(row, op.log_outcome or "failed", now, op.error)]
        fields |= {"next_attempt_at", "attempt_log"}
    else:
        row.finished_at = now
        row.result = op.result
        fields |= {"finished_at", "result"}
    op.outcome = True


def apply_batch(ops: list[Op], *, now: datetime | None = None) -> None:
    """Apply several transitions in one transaction: one locking read, one write, one commit.

    Each op's ``outcome`` is filled in. The rows are locked (``SELECT ... FOR UPDATE``) while the
    decisions are made, so two workers can never both start the same attempt, and an end is
    written only while the row is still ``running`` that attempt (fencing).
    """
    alias = db_alias()
    now = now or timezone.now()
    ids = {op.run_id if isinstance(op, StartOp) else op.attempt.run_id for op in ops}
    only_starts = all(isinstance(op, StartOp) for op in ops)
    with transaction.atomic(using=alias):
        connection = connections[alias]
        if only_starts and connection.vendor == "postgresql":
            # A start is redone from the broker's redelivery if lost in a database crash; only
            # outcomes (written before the ack) need to wait for the disk.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        rows = {
            str(row.pk): row
            for row in JobRun.objects.using(alias)
            .select_for_update()
            .filter(pk__in=ids)
            .only(*_LOADED_FIELDS)
        }
        changed: dict[str, set[str]] = {}
        creates: list[JobRun] = []
        for op in ops:
            if isinstance(op, StartOp):
                new_row = _apply_start(op, rows.get(op.run_id), now, changed)
                if new_row is not None:
                    creates.append(new_row)
                    rows[op.run_id] = new_row
            else:
                _apply_end(op, rows.get(op.attempt.run_id), now, changed)
        if creates:
            JobRun.objects.using(alias).bulk_create(creates, ignore_conflicts=True)
        created = {str(row.pk) for row in creates}
        by_fields: dict[frozenset[str], list[JobRun]] = {}
        for run_id, fields in changed.items():
            if fields and run_id not in created:
                by_fields.setdefault(frozenset(fields), []).append(rows[run_id])
        for field_set, objs in by_fields.items():
            if len(objs) == 1:
                JobRun.objects.using(alias).filter(pk=objs[0].pk).update(
                    **{name: getattr(objs[0], name) for name in field_set}
                )
            else:
                JobRun.objects.using(alias).bulk_update(objs, sorted(field_set))


def start_attempt(
    run_id: str,
    *,
    task_name: str,
    redelivered: bool = False,
    mode: str = RunMode.WORKER,
    kwargs: dict[str, Any] | None = None,
    queue: str = "",
    retries_done: int = 0,
) -> Attempt | Skip:
    """Move the run to ``running`` for a new attempt, or say why the message must be skipped.

    A row already ``running`` means either a duplicate delivery (skip it) or, when the broker
    flags the message as redelivered, an attempt whose worker died: that attempt is recorded as
    lost, and after ``MAX_LOST_ATTEMPTS`` of them the run fails instead of looping forever.
    """
    op = StartOp(run_id, task_name, redelivered, mode, kwargs, queue, retries_done)
    apply_batch([op])
    assert op.outcome is not None
    return op.outcome


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


def _end(op: EndOp) -> bool:
    apply_batch([op])
    return bool(op.outcome)


def finish_success(attempt: Attempt, result: Any) -> bool:
    return _end(end_op_success(attempt, result))


def finish_failure(attempt: Attempt, exc: BaseException, *, status: str = RunStatus.FAILED) -> bool:
    return _end(end_op_failure(attempt, exc, status=status))


def mark_retrying(attempt: Attempt, exc: BaseException, delay_seconds: float, *, outcome: str) -> bool:
    """Record that the attempt failed and another is scheduled ``delay_seconds`` from now."""
    return _end(end_op_retry(attempt, exc, delay_seconds, outcome=outcome))


def mark_skipped(run_id: str, reason: str) -> None:
    alias = db_alias()
    JobRun.objects.using(alias).filter(pk=run_id).exclude(status__in=TERMINAL_STATUSES).update(
        status=RunStatus.SKIPPED, skip_reason=reason[:200], finished_at=timezone.now()
    )


def mark_published(run_id: str) -> None:
    JobRun.objects.using(db_alias()).filter(pk=run_id, published_at__isnull=True).update(
        published_at=timezone.now()
    )


def cancel(run_ids: list[str]) -> int:
    """Cancel queued or retrying runs; a worker skips their message when it arrives."""
    return (
        JobRun.objects.using(db_alias())
        .filter(pk__in=run_ids, status__in=[RunStatus.QUEUED, RunStatus.RETRYING])
        .update(status=RunStatus.CANCELLED, finished_at=timezone.now(), skip_reason="cancelled")
    )


def write_progress(
    attempt: Attempt, stage: str, done: int | None, total: int | None, *, now: datetime | None = None
) -> None:
    alias = db_alias()
    JobRun.objects.using(alias).filter(
        pk=attempt.run_id, attempts=attempt.attempt, status=RunStatus.RUNNING
    ).update(
        progress_stage=stage[:100],
        progress_done=done,
        progress_total=total,
        heartbeat_at=now or timezone.now(),
    )


def sweep_stuck(now: datetime | None = None) -> int:
    """Mark ``running`` runs whose timeout plus grace has long passed with no heartbeat as failed.

    A run still ``running`` that long after its deadline has no live worker (the soft and hard
    time limits would have ended it), and its message was not redelivered (or it would have
    restarted), so nothing else will ever finish it.
    """
    now = now or timezone.now()
    grace = float(jobs_settings.STUCK_GRACE_SECONDS)
    default_timeout = float(jobs_settings.DEFAULT_EXECUTION_TIMEOUT)
    marked = 0
    alias = db_alias()
    candidates = JobRun.objects.using(alias).filter(
        status=RunStatus.RUNNING, started_at__lt=now - timedelta(seconds=grace)
    )
    for row in candidates.only("id", "execution_timeout", "started_at", "heartbeat_at", "attempts")[:1000]:
        deadline = (row.execution_timeout or default_timeout) + grace
        last_sign = row.heartbeat_at or row.started_at
        if row.started_at and last_sign and (now - last_sign).total_seconds() > deadline:
            marked += (
                JobRun.objects.using(alias)
                .filter(pk=row.pk, status=RunStatus.RUNNING, attempts=row.attempts)
                .update(
                    status=RunStatus.FAILED,
                    finished_at=now,
                    error=(
                        "WorkerLost: no sign of life for "
                        f"{int((now - last_sign).total_seconds())} s, past the execution timeout plus grace"
                    ),
                    lost_attempts=F("lost_attempts") + 1,
                )
            )
    return marked


def _ids(attempt: Attempt) -> tuple[str, int]:
    return attempt.run_id, attempt.attempt
