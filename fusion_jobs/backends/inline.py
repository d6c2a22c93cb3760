"""The eager backend: runs the task in the calling process, through the same transitions as a worker."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from ..admission import admit
from ..context import RunContext, activate, deactivate
from ..metrics import run_ended, run_started
from ..models import GATE_EAGER, RunMode, RunStatus
from ..recording import Attempt, Skip, describe_exception, finish_failure, finish_success, start_attempt
from ..registry import Task
from ..tracing import start_consumer
from . import broker_backend
from .base import BaseBackend, Outgoing

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
        run_ended(task.name, task.effective_queue, "failed", time.monotonic() - started)
        if span is not None:
            span.end(exc)
        finish_failure(attempt, exc, durable=durable)
        logger.exception("inline run %s of task %s failed", run_id, task.name)
        return InlineOutcome(RunStatus.FAILED, error=describe_exception(exc)[0], exception=exc)
    finally:
        deactivate(token)
    run_ended(task.name, task.effective_queue, "succeeded", time.monotonic() - started)
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
