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

from django.db import router, transaction
from django.db.models import F
from django.utils import timezone

from .conf import jobs_settings
from .models import STARTABLE_STATUSES, TERMINAL_STATUSES, JobRun, RunMode, RunStatus
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
    alias = db_alias()
    now = timezone.now()
    with transaction.atomic(using=alias):
        row = JobRun.objects.using(alias).select_for_update().filter(pk=run_id).first()
        if row is None:
            # A message with no row: published by another producer, or its row was pruned.
            row = JobRun.objects.using(alias).create(
                id=run_id,
                task_name=task_name,
                queue=queue or "default",
                mode=mode,
                kwargs=kwargs or {},
                status=RunStatus.RUNNING,
                attempts=1,
                started_at=now,
                heartbeat_at=now,
                published_at=now,
                worker=worker_id(),
                enqueued_by="message without a run row",
            )
            return Attempt(str(row.pk), 1, task_name, retries_done)
        if row.status in TERMINAL_STATUSES:
            return Skip(f"run is already {row.status}")
        if row.status not in STARTABLE_STATUSES:  # pragma: no cover - enum is closed
            return Skip(f"run is {row.status}")
        updates: dict[str, Any] = {}
        if row.status == RunStatus.RUNNING and row.attempts > 0:
            if not redelivered and mode == RunMode.WORKER:
                return Skip("a live attempt is already running this run (duplicate delivery)")
            lost = row.lost_attempts + 1
            log = [
                *row.attempt_log,
                _log_entry(row, "lost", now, "worker died mid-run (message redelivered)"),
            ]
            if lost >= int(jobs_settings.MAX_LOST_ATTEMPTS):
                JobRun.objects.using(alias).filter(pk=run_id).update(
                    status=RunStatus.FAILED,
                    lost_attempts=lost,
                    attempt_log=log,
                    finished_at=now,
                    error=(
                        f"WorkerLost: the worker running this task died {lost} times "
                        f"(killed, out of memory?); giving up after FUSION_JOBS_MAX_LOST_ATTEMPTS={lost}"
                    ),
                )
                return Skip(f"worker lost {lost} times")
            updates.update(lost_attempts=lost, attempt_log=log)
        attempt = row.attempts + 1
        JobRun.objects.using(alias).filter(pk=run_id).update(
            status=RunStatus.RUNNING,
            attempts=attempt,
            started_at=now,
            heartbeat_at=now,
            next_attempt_at=None,
            worker=worker_id(),
            progress_stage="",
            progress_done=None,
            progress_total=None,
            **updates,
        )
    return Attempt(str(run_id), attempt, task_name, retries_done)


def _fenced(alias: str, attempt: Attempt) -> Any:
    return JobRun.objects.using(alias).filter(
        pk=attempt.run_id, attempts=attempt.attempt, status=RunStatus.RUNNING
    )


def finish_success(attempt: Attempt, result: Any) -> bool:
    alias = db_alias()
    stored = to_json_result(result, int(jobs_settings.RESULT_MAX_BYTES)) if result is not None else None
    updated = _fenced(alias, attempt).update(
        status=RunStatus.SUCCEEDED, result=stored, finished_at=timezone.now(), error="", traceback=""
    )
    if not updated:
        logger.info("run %s attempt %s: success not recorded, a newer attempt owns the run", *_ids(attempt))
    return bool(updated)


def finish_failure(attempt: Attempt, exc: BaseException, *, status: str = RunStatus.FAILED) -> bool:
    alias = db_alias()
    error, trace = describe_exception(exc)
    updated = _fenced(alias, attempt).update(
        status=status, error=error, traceback=trace, finished_at=timezone.now()
    )
    if not updated:
        logger.info("run %s attempt %s: failure not recorded, a newer attempt owns the run", *_ids(attempt))
    return bool(updated)


def mark_retrying(attempt: Attempt, exc: BaseException, delay_seconds: float, *, outcome: str) -> bool:
    """Record that the attempt failed and another is scheduled ``delay_seconds`` from now."""
    alias = db_alias()
    error, trace = describe_exception(exc)
    now = timezone.now()
    with transaction.atomic(using=alias):
        row = _fenced(alias, attempt).select_for_update().first()
        if row is None:
            return False
        log = [*row.attempt_log, _log_entry(row, outcome, now, error)]
        _fenced(alias, attempt).update(
            status=RunStatus.RETRYING,
            error=error,
            traceback=trace,
            next_attempt_at=now + timedelta(seconds=delay_seconds),
            attempt_log=log,
        )
    return True


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
    _fenced(db_alias(), attempt).update(
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
