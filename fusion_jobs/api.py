"""The public entry points: ``enqueue()``, the jobs gate and the status shown to users."""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from . import tracing
from .backends.base import Outgoing
from .conf import broker_queue, jobs_settings, queue_namespace
from .exceptions import FusionJobsError, PayloadError
from .models import HANDLE_INLINE
from .outbox import policy_for, publish_and_mark
from .registry import Task, all_tasks, get_task
from .utils import json_roundtrip, mask_url

#: Runs per publish of ``enqueue_many()``: one AMQP transaction each.
BATCH = 500

if TYPE_CHECKING:
    from .recording import Attempt

logger = logging.getLogger("fusion_jobs")


def is_jobs_enabled() -> bool:
    """True when a broker URL is configured and eager mode is off: ``enqueue()`` will publish."""
    return bool(jobs_settings.BROKER_URL) and not bool(jobs_settings.EAGER)


def get_jobs_status() -> dict[str, Any]:
    """What a status page shows: enabled, mode (``broker``/``eager``) and the masked broker URL."""
    url = str(jobs_settings.BROKER_URL or "")
    enabled = is_jobs_enabled()
    if enabled:
        reason = "broker configured: jobs are queued to workers"
    elif url:
        reason = "FUSION_JOBS_EAGER is on: jobs run inline"
    else:
        reason = "no broker configured (FUSION_JOBS_BROKER_URL): jobs run inline"
    return {
        "enabled": enabled,
        "mode": "broker" if enabled else "eager",
        "broker": mask_url(url) if url else None,
        "namespace": queue_namespace(),
        "reason": reason,
        "on_publish_error": str(jobs_settings.ON_PUBLISH_ERROR),
        "tasks": sorted(all_tasks()),
    }


@dataclass
class RunHandle:
    """What ``enqueue()`` returns: the run's id and whether it was queued or run inline.

    For an inline run that has finished, ``status``, ``result`` and ``error`` are filled in;
    ``refresh()`` reads the latest state from the database for either kind.
    """

    run_id: str
    mode: str  # "queued" or "inline"
    task_name: str
    status: str = "queued"
    result: Any = None
    error: str = ""
    _published: bool = field(default=False, repr=False)

    @property
    def run(self) -> Any:
        from .models import JobRun

        return JobRun.objects.get(pk=self.run_id)

    def refresh(self) -> RunHandle:
        run = self.run
        self.status, self.result, self.error = run.status, run.result, run.error
        return self

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "timed_out")


def _caller() -> str:
    """``module:function`` of the first frame outside fusion_jobs (and Dramatiq, for an actor's
    ``send()``): who enqueued, for the admin."""
    frame = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not module.startswith(("fusion_jobs", "dramatiq.")):
            return f"{module}:{frame.f_code.co_name}"[:200]
        frame = frame.f_back  # type: ignore[assignment]
    return ""


def enqueue(task_or_name: Task | str, /, **kwargs: Any) -> RunHandle:
    """Run a task in the background, or inline when jobs are disabled.

    The arguments are checked against the task's signature (TaskArgumentsError) and JSON
    round-tripped (PayloadError names the bad argument path) first: nothing is written or sent.
    The ``JobRun`` row is written in the caller's transaction, and publishing (or the inline run)
    waits for that transaction to commit, so a rolled-back transaction enqueues nothing and a
    worker never sees an uncommitted row. What happens after the commit never raises into the
    caller's other on-commit hooks (see ``_after_commit``).
    """
    task_obj, payload = _checked(task_or_name, kwargs)
    return _enqueue_validated(task_obj, payload, enqueued_by=_caller())


def _checked(task_or_name: Task | str, kwargs: dict[str, Any]) -> tuple[Task, dict[str, Any]]:
    """The task and its JSON round-tripped arguments, or ``TaskArgumentsError``/``PayloadError``."""
    task_obj = get_task(task_or_name)
    task_obj.check_arguments(kwargs)
    payload, _size = json_roundtrip(
        kwargs, task_name=task_obj.name, max_bytes=int(jobs_settings.MAX_PAYLOAD_BYTES)
    )
    return task_obj, payload


def enqueue_at(when: datetime | timedelta, task_or_name: Task | str, /, **kwargs: Any) -> RunHandle:
    """Enqueue a run that starts no earlier than ``when`` (an aware datetime, or a timedelta from now).

    The run is written ``queued`` with ``next_attempt_at = when`` and nothing is published: the
    outbox relay (in every worker and in ``runcrons``) publishes it when it is due, so any horizon
    works, hours or days, and nothing waits unacked on the broker. The arguments are checked as
    ``enqueue()`` checks them (``_checked``). A naive datetime raises ``PayloadError`` (which zone it means is a
    guess) unless ``USE_TZ`` is off. With jobs disabled the run executes inline at once, like
    Celery's eager mode ignoring a countdown: the start time is logged and ignored.
    """
    not_before = _start_time(when)
    task_obj, payload = _checked(task_or_name, kwargs)
    if not is_jobs_enabled():
        logger.info(
            "enqueue_at: jobs run inline here, so %s runs now instead of at %s",
            task_obj.name,
            not_before.isoformat(timespec="seconds"),
        )
        return _enqueue_validated(task_obj, payload, enqueued_by=_caller())
    return _enqueue_validated(task_obj, payload, enqueued_by=_caller(), not_before=not_before)


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


def _enqueue_validated(task_obj: Task, payload: dict[str, Any], **options: Any) -> RunHandle:
    """Enqueue a checked run, inside a producer span when tracing is on (``fusion_jobs.tracing``)."""
    run_id = str(uuid.uuid4())
    if not tracing.enabled():
        return _enqueue_row(task_obj, payload, run_id=run_id, traceparent=None, **options)
    queued = bool(options.get("force_queue")) or is_jobs_enabled()
    queue = broker_queue(task_obj.effective_queue)
    with tracing.producer_span(task_obj.name, queue, run_id, queued=queued) as traceparent:
        return _enqueue_row(task_obj, payload, run_id=run_id, traceparent=traceparent, **options)


def _enqueue_row(
    task_obj: Task,
    payload: dict[str, Any],
    *,
    run_id: str,
    traceparent: str | None,
    enqueued_by: str,
    retry_of: Any = None,
    cron: Any = None,
    scheduled_for: Any = None,
    force_queue: bool = False,
    on_publish_error: str | None = None,
    not_before: datetime | None = None,
) -> RunHandle:
    from .context import current_run_id
    from .models import JobRun, RunMode
    from .recording import Attempt, begin_inline_attempt, db_alias, insert_run

    queued = force_queue or is_jobs_enabled()
    # enqueue_at() with a start ahead: the row is all there is until the relay publishes it.
    deferred = queued and not_before is not None and not_before > timezone.now()
    parent = current_run_id()
    if parent and not enqueued_by.startswith(("admin", "cron")):
        enqueued_by = f"run {parent}"
    alias = db_alias()
    connection = connections[alias]
    outside_transaction = not connection.in_atomic_block and connection.get_autocommit()
    row = JobRun(
        id=run_id,
        task_name=task_obj.name,
        queue=task_obj.effective_queue,
        mode=RunMode.WORKER if queued else RunMode.INLINE,
        kwargs=payload,
        max_retries=task_obj.effective_max_retries if queued else 0,
        execution_timeout=task_obj.effective_timeout,
        enqueued_by=enqueued_by,
        retry_of=retry_of,
        cron=cron,
        scheduled_for=scheduled_for,
        next_attempt_at=not_before if deferred else None,  # a start already past: enqueue() as usual
    )
    # Inline, outside a transaction, for a run no overlap rule can keep from starting: the row is
    # written already started (one write instead of two) and the run goes straight on.
    started_here = not queued and outside_transaction and cron is None and not task_obj.single_flight
    if started_here:
        begin_inline_attempt(row, timezone.now())
    insert_run(row, using=alias, durable=deferred or not (queued or started_here))
    handle = RunHandle(run_id=run_id, mode="queued" if queued else "inline", task_name=task_obj.name)
    if started_here:
        _raise(_run_here(task_obj, handle, payload, Attempt(run_id, 1, task_obj.name)))
    elif deferred:
        pass  # published by the outbox relay at next_attempt_at
    elif queued:
        _after_commit(
            alias,
            lambda may_raise: _publish(task_obj, handle, payload, on_publish_error, may_raise, traceparent),
        )
    else:
        _after_commit(alias, lambda may_raise: _raise(_run_here(task_obj, handle, payload), may_raise))
    return handle


def _raise(error: Exception | None, may_raise: bool = True) -> None:
    if error is not None and may_raise:
        raise error


def _after_commit(alias: str, hook: Callable[[bool], object]) -> None:
    """Run ``hook`` once the caller's transaction commits; at once when there is none.

    Outside a transaction the hook runs now, with ``may_raise=True``: a ``PublishError``
    (``ON_PUBLISH_ERROR=raise``) or the task's exception (``INLINE_RAISE``) reaches the caller.
    Inside one it runs after the commit, among the caller's other on-commit hooks, and Django
    skips all the later ones when a hook raises (other enqueues' publishes included). So there it
    gets ``may_raise=False``, leaves the failure on the run and its handle, and anything that
    still escapes is logged here, never raised.
    """
    if not connections[alias].in_atomic_block:
        hook(True)
        return

    def independent() -> None:
        try:
            hook(False)
        except Exception:
            logger.exception(
                "fusion_jobs on-commit hook failed after the transaction committed; logged, not raised, "
                "so the transaction's other on-commit hooks still run"
            )

    transaction.on_commit(independent, using=alias)


def enqueue_many(task_or_name: Task | str, kwargs_list: list[dict[str, Any]]) -> list[RunHandle]:
    """Enqueue many runs of one task: one multi-row INSERT, then one batched publish after commit.

    Every item is checked (TaskArgumentsError, PayloadError, naming the item's index) before
    anything is written; inline (no broker), the runs execute one after another after the commit,
    exactly as ``enqueue()`` would run them, all of them even when one fails (``INLINE_RAISE``
    raises the first failure once the batch has run, and only outside a transaction).
    """
    from .models import JobRun, RunMode
    from .recording import db_alias

    task_obj = get_task(task_or_name)
    limit = int(jobs_settings.MAX_PAYLOAD_BYTES)
    payloads = []
    for index, kwargs in enumerate(kwargs_list):
        if not isinstance(kwargs, dict):
            raise PayloadError(
                f"{task_obj.name}: kwargs_list[{index}] is a {type(kwargs).__name__}, not a dict"
            )
        label = f"{task_obj.name} (item {index})"
        task_obj.check_arguments(kwargs, label=label)
        payloads.append(json_roundtrip(kwargs, task_name=label, max_bytes=limit)[0])
    queued = is_jobs_enabled()
    enqueued_by = _caller()
    rows = [
        JobRun(
            id=str(uuid.uuid4()),
            task_name=task_obj.name,
            queue=task_obj.effective_queue,
            mode=RunMode.WORKER if queued else RunMode.INLINE,
            kwargs=payload,
            max_retries=task_obj.effective_max_retries if queued else 0,
            execution_timeout=task_obj.effective_timeout,
            enqueued_by=enqueued_by,
        )
        for payload in payloads
    ]
    alias = db_alias()
    JobRun.objects.using(alias).bulk_create(rows, batch_size=1000)
    handles = [
        RunHandle(run_id=str(row.pk), mode="queued" if queued else "inline", task_name=task_obj.name)
        for row in rows
    ]
    if queued:
        messages = [Outgoing(task_obj, h.run_id, p) for h, p in zip(handles, payloads, strict=True)]
        # A batch is never run inline: what does not reach the broker stays for the relay.
        _after_commit(alias, lambda _may_raise: publish_and_mark(messages, chunk_size=BATCH))
    else:
        _after_commit(alias, lambda may_raise: _run_all_here(task_obj, handles, payloads, may_raise))
    return handles


def _run_all_here(
    task_obj: Task, handles: list[RunHandle], payloads: list[dict[str, Any]], may_raise: bool
) -> None:
    """Run every item: stopping at a failure would leave the rest ``queued`` with nothing to run them."""
    first: Exception | None = None
    for handle, payload in zip(handles, payloads, strict=True):
        try:
            error = _run_here(task_obj, handle, payload)
        except Exception as exc:  # not the task's: recording failed; the other items still run
            logger.exception("inline run %s of %s could not be run", handle.run_id, task_obj.name)
            error = exc
        first = first or error
    _raise(first, may_raise)


def _run_here(
    task_obj: Task, handle: RunHandle, payload: dict[str, Any], started: Attempt | None = None
) -> Exception | None:
    """Run inline and fill in the handle; return the task's exception when ``INLINE_RAISE`` wants
    it raised (the caller raises it only where that cannot skip anyone's on-commit hooks)."""
    from .backends.inline import run_inline

    outcome = run_inline(task_obj, handle.run_id, payload, started=started)
    handle.status, handle.result, handle.error = outcome.status, outcome.result, outcome.error
    return outcome.exception if jobs_settings.INLINE_RAISE else None


def _publish(
    task_obj: Task,
    handle: RunHandle,
    payload: dict[str, Any],
    policy: str | None,
    may_raise: bool,
    traceparent: str | None,
) -> None:
    message = Outgoing(task_obj, handle.run_id, payload, traceparent)
    unpublished = publish_and_mark([message], policy=policy or policy_for(task_obj), may_raise=may_raise)
    if unpublished is not None and unpublished.outcome is not None:
        outcome = unpublished.outcome
        handle.status, handle.result, handle.error = outcome.status, outcome.result, outcome.error
        if unpublished.inline:
            handle.mode = HANDLE_INLINE


def retry_run(run_id: str, *, requested_by: str) -> RunHandle:
    """Queue a new run with the same task and arguments, linked to the original (admin retry).

    Raises ``UnknownTaskError``, ``TaskArgumentsError`` or ``PayloadError`` as ``enqueue()`` would.
    Always queued, never run inline: a retry asked for from a web request must not execute there.
    If publishing fails the run stays queued for the outbox relay.
    """
    from .models import JobRun
    from .recording import db_alias

    original = JobRun.objects.using(db_alias()).get(pk=run_id)
    # Checked like a new enqueue: the task's signature may have changed since, and a row left by a
    # rejected broker message holds a preview of that message, not arguments to run.
    task_obj, payload = _checked(original.task_name, dict(original.kwargs))
    return _enqueue_validated(
        task_obj,
        payload,
        enqueued_by=f"admin retry by {requested_by}"[:200],
        retry_of=original,
        force_queue=True,
        on_publish_error="outbox",
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
