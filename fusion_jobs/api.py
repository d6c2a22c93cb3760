"""The public entry points: ``enqueue()`` and its kin, the jobs gate and the status shown to users.

Each checks what it is given and hands the run to the backend :func:`fusion_jobs.backends.get_backend`
chose (``fusion_jobs.backends.base``): the backends write, run and publish runs.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from .backends import broker_backend, get_backend
from .backends.base import caller, checked
from .conf import jobs_settings, queue_namespace
from .exceptions import FusionJobsError, PayloadError
from .handle import RunHandle
from .models import JobRun
from .outbox import OUTBOX
from .recording import db_alias
from .registry import Task, all_tasks, get_task
from .utils import mask_url

logger = logging.getLogger("fusion_jobs")


def is_jobs_enabled() -> bool:
    """True when a broker URL is configured and eager mode is off: ``enqueue()`` will publish.

    That is, when the chosen backend queues runs (``backends.get_backend()`` decides it).
    """
    return get_backend().queues_runs


def get_jobs_status() -> dict[str, Any]:
    """What a status page shows: enabled, mode (``broker``/``eager``) and the masked broker URL."""
    url = str(jobs_settings.BROKER_URL or "")
    backend = get_backend()
    enabled = backend.queues_runs
    if enabled:
        reason = "broker configured: jobs are queued to workers"
    elif url:
        reason = "FUSION_JOBS_EAGER is on: jobs run inline"
    else:
        reason = "no broker configured (FUSION_JOBS_BROKER_URL): jobs run inline"
    return {
        "enabled": enabled,
        "mode": backend.gate,
        "broker": mask_url(url) if url else None,
        "namespace": queue_namespace(),
        "reason": reason,
        "on_publish_error": str(jobs_settings.ON_PUBLISH_ERROR),
        "tasks": sorted(all_tasks()),
    }


def enqueue(task_or_name: Task | str, /, **kwargs: Any) -> RunHandle:
    """Run a task in the background, or inline when jobs are disabled.

    The arguments are checked against the task's signature (TaskArgumentsError) and JSON
    round-tripped (PayloadError names the bad argument path) first: nothing is written or sent.
    The ``JobRun`` row is written in the caller's transaction, and publishing (or the inline run)
    waits for that transaction to commit, so a rolled-back transaction enqueues nothing and a
    worker never sees an uncommitted row. What happens after the commit never raises into the
    caller's other on-commit hooks (see ``backends.base.after_commit``).
    """
    return get_backend().submit(get_task(task_or_name), kwargs)


def enqueue_at(when: datetime | timedelta, task_or_name: Task | str, /, **kwargs: Any) -> RunHandle:
    """Enqueue a run that starts no earlier than ``when`` (an aware datetime, or a timedelta from now).

    The run is written ``queued`` with ``next_attempt_at = when`` and nothing is published: the
    outbox relay (in every worker and in ``runcrons``) publishes it when it is due, so any horizon
    works, hours or days, and nothing waits unacked on the broker. The arguments are checked as
    ``enqueue()`` checks them. A naive datetime raises ``PayloadError`` (which zone it means is a
    guess) unless ``USE_TZ`` is off. With jobs disabled the run executes inline at once, like
    Celery's eager mode ignoring a countdown: the start time is logged and ignored.
    """
    not_before = _start_time(when)
    return get_backend().submit(get_task(task_or_name), kwargs, not_before=not_before)


def _start_time(when: Any) -> datetime:
    """``enqueue_at``'s ``when`` as a datetime the database can store and read back.

    A start past year 9999 in UTC (9999-12-31 23:00 at UTC-5, a huge timedelta) is refused:
    PostgreSQL would store it, and every later read of the row would fail.
    """
    try:
        start = _given_start(when)
        if timezone.is_aware(start):
            start.astimezone(UTC)  # how it is read back
    except OverflowError:
        raise PayloadError(
            f"enqueue_at: when={when!r} is out of range (a start must fall in years 1 to 9999 in UTC)"
        ) from None
    return start


def _given_start(when: Any) -> datetime:
    """``when`` as a datetime (aware under ``USE_TZ``); OverflowError past the datetime range."""
    if isinstance(when, timedelta):
        return timezone.now() + when
    if not isinstance(when, datetime):
        raise PayloadError(
            f"enqueue_at: when must be an aware datetime or a timedelta, not {type(when).__name__}"
        )
    if not settings.USE_TZ:
        return timezone.make_naive(when) if timezone.is_aware(when) else when
    if timezone.is_naive(when):
        raise PayloadError(
            f"enqueue_at: when={when.isoformat()} is a naive datetime, and which time zone it means "
            "is ambiguous; pass an aware datetime (e.g. timezone.now() + timedelta(hours=1)) or a timedelta"
        )
    return when


def enqueue_many(task_or_name: Task | str, kwargs_list: list[dict[str, Any]]) -> list[RunHandle]:
    """Enqueue many runs of one task: one multi-row INSERT, then one batched publish after commit.

    Every item is checked (TaskArgumentsError, PayloadError, naming the item's index) before
    anything is written; inline (no broker), the runs execute one after another after the commit,
    exactly as ``enqueue()`` would run them, all of them even when one fails (``INLINE_RAISE``
    raises the first failure once the batch has run, and only outside a transaction).
    """
    task_obj = get_task(task_or_name)
    payloads = []
    limit = int(jobs_settings.MAX_PAYLOAD_BYTES)
    for index, kwargs in enumerate(kwargs_list):
        if not isinstance(kwargs, dict):
            raise PayloadError(
                f"{task_obj.name}: kwargs_list[{index}] is a {type(kwargs).__name__}, not a dict"
            )
        payloads.append(checked(task_obj, kwargs, label=f"{task_obj.name} (item {index})", limit=limit))
    return get_backend().enqueue_many(task_obj, payloads, caller())


def retry_run(run_id: str, *, requested_by: str) -> RunHandle:
    """Queue a new run with the same task and arguments, linked to the original (admin retry).

    Raises ``UnknownTaskError``, ``TaskArgumentsError`` or ``PayloadError`` as ``enqueue()`` would.
    Always queued, never run inline: a retry asked for from a web request must not execute there.
    If publishing fails the run stays queued for the outbox relay.
    """
    original = JobRun.objects.using(db_alias()).get(pk=run_id)
    # Checked like a new enqueue: the task's signature may have changed since, and a row left by a
    # rejected broker message holds a preview of that message, not arguments to run.
    backend = get_backend()
    return (backend if backend.queues_runs else broker_backend()).submit(
        get_task(original.task_name),
        dict(original.kwargs),
        enqueued_by=f"admin retry by {requested_by}"[:200],
        retry_of=original,
        policy=OUTBOX,
    )


__all__ = [
    "FusionJobsError",
    "RunHandle",
    "enqueue",
    "enqueue_at",
    "enqueue_many",
    "get_jobs_status",
    "is_jobs_enabled",
    "retry_run",
]
