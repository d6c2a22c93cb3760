"""The framework's ``TaskResult`` of a run, read from its ``JobRun`` row or from a running attempt."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ...models import FAILED_STATUSES, WAITING_STATUSES, JobRun, RunStatus
from ...recording import Attempt, worker_id
from .framework import TaskError, TaskResult, TaskResultStatus

#: How each run status reads in the framework (README: "Django's Tasks framework").
STATUS_MAP: dict[str, str] = {
    RunStatus.QUEUED: "READY",
    RunStatus.RUNNING: "RUNNING",
    RunStatus.RETRYING: "READY",  # "ready to be executed again", in Django's words
    RunStatus.SUCCEEDED: "SUCCESSFUL",
    RunStatus.FAILED: "FAILED",
    RunStatus.TIMED_OUT: "FAILED",
    RunStatus.CANCELLED: "FAILED",
    RunStatus.SKIPPED: "FAILED",  # "unable to start": single-flight, a stale cron tick
}


def _class_path(error: str, trace: str) -> str:
    """``module.Class`` of a recorded exception: the traceback's last line names it fully."""
    lines = [line for line in trace.strip().splitlines() if line and not line.startswith(" ")]
    head = (lines[-1] if lines else error).split(":", 1)[0].strip()
    if not head or " " in head:
        head = error.split(":", 1)[0].strip() or "Exception"
    return head if "." in head else f"builtins.{head}"


def result_of(task: Any, row: JobRun, alias: str) -> Any:
    """The framework's view of a run: status, times, errors, workers and return value from the row."""
    log = [entry for entry in (row.attempt_log or []) if isinstance(entry, dict)]
    worker_ids = [str(entry.get("worker") or "") for entry in log]
    if row.attempts > len(log) and row.status not in WAITING_STATUSES:
        worker_ids.append(row.worker)
    errors = [
        TaskError(
            exception_class_path=_class_path(str(entry.get("error") or ""), ""),
            traceback=str(entry.get("error") or ""),
        )
        for entry in log
        if entry.get("outcome") in FAILED_STATUSES and entry.get("error")
    ]
    if row.status in FAILED_STATUSES and row.error:
        errors.append(
            TaskError(
                exception_class_path=_class_path(row.error, row.traceback),
                traceback=row.traceback or row.error,
            )
        )
    first_start = log[0].get("started_at") if log else None
    result = TaskResult(
        task=task,
        id=str(row.pk),
        status=TaskResultStatus(STATUS_MAP.get(str(row.status), "FAILED")),
        enqueued_at=row.enqueued_at,
        started_at=_parse_time(first_start) or row.started_at,
        finished_at=row.finished_at,
        last_attempted_at=row.started_at,
        args=[],
        kwargs=dict(row.kwargs or {}),
        backend=alias,
        errors=errors,
        worker_ids=worker_ids,
    )
    if row.status == RunStatus.SUCCEEDED:
        object.__setattr__(result, "_return_value", row.result)
    return result


def _parse_time(value: Any) -> Any:
    return parse_datetime(value) if isinstance(value, str) else None


def running_result(django_task: Any, attempt: Attempt, kwargs: dict[str, Any], alias: str) -> Any:
    """A RUNNING result from what the attempt knows, without a query (times and past workers unread)."""
    now = timezone.now()
    return TaskResult(
        task=django_task,
        id=attempt.run_id,
        status=TaskResultStatus.RUNNING,
        enqueued_at=None,
        started_at=now,
        finished_at=None,
        last_attempted_at=now,
        args=[],
        kwargs=kwargs,
        backend=alias,
        errors=[],
        worker_ids=[""] * (attempt.attempt - 1) + [worker_id()],
    )
