"""The eager backend: runs the task in the calling process, through the same transitions as a worker."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from django.db import connections
from django.utils import timezone

from ..admission import admit
from ..conf import jobs_settings
from ..context import RunContext, activate, deactivate
from ..handle import RunHandle
from ..metrics import run_ended, run_started
from ..models import GATE_EAGER, HANDLE_INLINE, JobRun, RunMode, RunStatus
from ..recording import (
    Attempt,
    Skip,
    begin_inline_attempt,
    db_alias,
    describe_exception,
    finish_failure,
    finish_success,
    insert_run,
    start_attempt,
)
from ..registry import Task
from ..tracing import start_consumer
from . import broker_backend
from .base import BaseBackend, NewRun, Outgoing, after_commit, raise_if, write_runs

logger = logging.getLogger("fusion_jobs.inline")


class InlineOutcome:
    """How an inline attempt ended. ``exception`` is the task's own, for ``INLINE_RAISE``: the
    caller decides whether it may raise it (never from inside an on-commit hook)."""

    __slots__ = ("error", "exception", "result", "status")

    def __init__(
        self, status: str, result: Any = None, error: str = "", exception: Exception | None = None
    ) -> None:
        self.status = str(status)
        self.result = result
        self.error = error
        self.exception = exception


def run_inline(
    task: Task, run_id: str, kwargs: dict[str, Any], *, started: Attempt | None = None
) -> InlineOutcome:
    """Run one attempt here. The task's exception is logged and recorded, never raised: it is
    returned on the outcome, and ``enqueue()`` re-raises it when ``FUSION_JOBS_INLINE_RAISE`` is
    on and the caller can still receive it. The outcome is recorded whatever the task returned or
    raised (NUL, lone surrogates and unencodable values are sanitised by ``recording``).

    Single-flight and stale cron ticks are checked first, as on a worker (``fusion_jobs.admission``).
    ``started``: the row was written already ``running`` for this attempt (``enqueue()`` does so
    outside a transaction, for a task no overlap rule applies to); the outcome is then written
    without waiting for the disk, like that row.
    """
    if started is not None:
        return _execute(task, run_id, kwargs, started, durable=False)
    admission = admit(task, run_id, kwargs)
    if admission.skip_reason:
        logger.info("inline run %s of %s skipped: %s", run_id, task.name, admission.skip_reason)
        return InlineOutcome(RunStatus.SKIPPED, error=admission.skip_reason)
    try:
        return _run_attempt(task, run_id, kwargs)
    finally:
        admission.release()


def _run_attempt(task: Task, run_id: str, kwargs: dict[str, Any]) -> InlineOutcome:
    started = start_attempt(run_id, task_name=task.name, mode=RunMode.INLINE, kwargs=kwargs)
    if isinstance(started, Skip):
        logger.info("inline run %s of %s skipped: %s", run_id, task.name, started.reason)
        return InlineOutcome(RunStatus.SKIPPED, error=started.reason)
    return _execute(task, run_id, kwargs, started, durable=True)


def _execute(
    task: Task, run_id: str, kwargs: dict[str, Any], attempt: Attempt, *, durable: bool
) -> InlineOutcome:
    ctx = RunContext(attempt)
    token = activate(ctx)
    span = start_consumer(task.name, task.effective_queue, run_id, attempt.attempt, system="fusion_jobs")
    started = time.monotonic()
    run_started(task.name, task.effective_queue)
    try:
        task.check_arguments(kwargs)
        result = task.fn(**kwargs)
    except Exception as exc:
        run_ended(task.name, task.effective_queue, RunStatus.FAILED, time.monotonic() - started)
        if span is not None:
            span.end(exc)
        finish_failure(attempt, exc, durable=durable)
        logger.exception("inline run %s of task %s failed", run_id, task.name)
        return InlineOutcome(RunStatus.FAILED, error=describe_exception(exc)[0], exception=exc)
    finally:
        deactivate(token)
    run_ended(task.name, task.effective_queue, RunStatus.SUCCEEDED, time.monotonic() - started)
    if span is not None:
        span.end()
    finish_success(attempt, result, durable=durable)
    return InlineOutcome(RunStatus.SUCCEEDED, result=result)


class InlineBackend(BaseBackend):
    """New runs execute in the calling process (no broker, or ``FUSION_JOBS_EAGER``)."""

    queues_runs = False
    gate = GATE_EAGER

    def publish(self, messages: Sequence[Outgoing]) -> None:
        """What must be queued whatever the gate (a cron tick, an admin retry, the relay) goes to
        the configured broker; with none, ``PublishError`` leaves it for the outbox relay."""
        broker_backend().publish(messages)

    def enqueue(self, run: NewRun) -> RunHandle:
        """Outside a transaction, for a run no overlap rule can keep from starting, the row is
        written already started (one write instead of two) and the run goes straight on."""
        if run.not_before is not None:  # enqueue_at(): like Celery's eager mode ignoring a countdown
            logger.info(
                "enqueue_at: jobs run inline here, so %s runs now instead of at %s",
                run.task.name,
                run.not_before.isoformat(timespec="seconds"),
            )
        alias = db_alias()
        connection = connections[alias]
        outside_transaction = not connection.in_atomic_block and connection.get_autocommit()
        row = JobRun.new_run(
            run.task,
            run.kwargs,
            queued=False,
            id=run.run_id,
            enqueued_by=run.enqueued_by,
            retry_of=run.retry_of,
        )
        started_here = outside_transaction and not run.task.single_flight
        if started_here:
            begin_inline_attempt(row, timezone.now())
        insert_run(row, using=alias, durable=not started_here)
        handle = RunHandle(run_id=run.run_id, mode=HANDLE_INLINE, task_name=run.task.name)
        if started_here:
            raise_if(run_here(handle, run.task, run.kwargs, Attempt(run.run_id, 1, run.task.name)))
        else:
            after_commit(alias, lambda may_raise: raise_if(run_here(handle, run.task, run.kwargs), may_raise))
        return handle

    def enqueue_many(self, task: Task, payloads: list[dict[str, Any]], enqueued_by: str) -> list[RunHandle]:
        """The runs execute one after another after the commit, all of them even when one fails
        (``INLINE_RAISE`` raises the first failure once the batch has run, where it may)."""
        alias, handles = write_runs(task, payloads, enqueued_by, queued=False)
        after_commit(alias, lambda may_raise: _run_all_here(task, handles, payloads, may_raise))
        return handles


def run_here(
    handle: RunHandle, task: Task, kwargs: dict[str, Any], started: Attempt | None = None
) -> Exception | None:
    """Run inline and fill in the handle; return the task's exception when ``INLINE_RAISE`` wants
    it raised (the caller raises it only where that cannot skip anyone's on-commit hooks)."""
    outcome = run_inline(task, handle.run_id, kwargs, started=started)
    handle.status, handle.result, handle.error = outcome.status, outcome.result, outcome.error
    return outcome.exception if jobs_settings.INLINE_RAISE else None


def _run_all_here(
    task: Task, handles: list[RunHandle], payloads: list[dict[str, Any]], may_raise: bool
) -> None:
    """Run every item: stopping at a failure would leave the rest ``queued`` with nothing to run them."""
    first: Exception | None = None
    for handle, payload in zip(handles, payloads, strict=True):
        try:
            error = run_here(handle, task, payload)
        except Exception as exc:  # not the task's: recording failed; the other items still run
            logger.exception("inline run %s of %s could not be run", handle.run_id, task.name)
            error = exc
        first = first or error
    raise_if(first, may_raise)
