"""Run recording and retries on the worker, in one middleware so their order is never in doubt.

Before a message runs, its ``JobRun`` moves to ``running`` (or the message is skipped: cancelled,
already finished, a duplicate delivery, a worker lost too often). After it runs, the outcome is
written *before* Dramatiq acks the message, so a SIGKILL can never leave a finished run looking
unfinished while its message is gone. Retries replace Dramatiq's ``Retries`` middleware: the
retry is recorded (``retrying``, next attempt time) before it is published, and a retry that
cannot be published is left in the database for the relay instead of being acked away.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from dramatiq import Broker, Middleware
from dramatiq.broker import MessageProxy
from dramatiq.middleware import SkipMessage
from dramatiq.middleware.time_limit import TimeLimitExceeded

from ..conf import jobs_settings
from ..context import RunContext, activate, deactivate
from ..encoder import record_malformed
from ..exceptions import TaskArgumentsError
from ..models import RunMode, RunStatus
from ..recording import (
    Attempt,
    Skip,
    finish_failure,
    finish_success,
    mark_retrying,
    start_attempt,
)
from ..registry import Task, get_task

logger = logging.getLogger("fusion_jobs.worker")


def backoff_seconds(task_obj: Task, retries_done: int) -> float:
    """Exponential backoff with jitter: ``min * 2**retries`` (up to 1.5x), capped at ``max``."""
    low = task_obj.min_backoff or float(jobs_settings.RETRY_MIN_BACKOFF)
    high = task_obj.max_backoff or float(jobs_settings.RETRY_MAX_BACKOFF)
    base = min(high, low * (2**retries_done))
    return min(high, base * random.uniform(1.0, 1.5))


class RunLifecycle(Middleware):
    @property
    def actor_options(self) -> set[str]:
        return {"max_retries", "min_backoff", "max_backoff", "throws", "retry_when"}

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        task_obj = get_task(message.actor_name)  # Dramatiq only hands over messages for declared actors
        started = start_attempt(
            message.message_id,
            task_name=task_obj.name,
            redelivered=bool(getattr(message, "redelivered", False)),
            mode=RunMode.WORKER,
            kwargs=dict(message.kwargs),
            queue=message.queue_name,
            retries_done=int(message.options.get("retries", 0)),
        )
        if isinstance(started, Skip):
            logger.info("skipping %s run %s: %s", task_obj.name, message.message_id, started.reason)
            raise SkipMessage(started.reason)
        ctx = RunContext(started)
        token = activate(ctx)
        _tokens[message.message_id] = (token, ctx)

    def before_nack(self, broker: Broker, message: MessageProxy) -> None:
        """Dramatiq dead-letters a message for an undeclared actor by itself; leave a run saying why."""
        if not broker.actors.get(message.actor_name):
            record_malformed(f"unknown task {message.actor_name!r}", message.encode(), dict(message.asdict()))

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        _tokens.pop(message.message_id, None)

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        entry = _tokens.pop(message.message_id, None)
        if entry is None:
            return
        token, ctx = entry
        deactivate(token)
        attempt = ctx.attempt
        if exception is None:
            finish_success(attempt, ctx.result)
            return
        task_obj = get_task(message.actor_name)
        retries_done = int(message.options.get("retries", 0))
        timed_out = isinstance(exception, TimeLimitExceeded)
        final_status = RunStatus.TIMED_OUT if timed_out else RunStatus.FAILED
        retryable = not isinstance(exception, TaskArgumentsError) and (
            not timed_out or task_obj.retry_on_timeout
        )
        if not retryable or retries_done >= task_obj.effective_max_retries:
            finish_failure(attempt, exception, status=final_status)
            message.fail()
            return
        self._retry(broker, message, task_obj, attempt, exception, retries_done, timed_out)

    def _retry(
        self,
        broker: Broker,
        message: MessageProxy,
        task_obj: Task,
        attempt: Attempt,
        exception: BaseException,
        retries_done: int,
        timed_out: bool,
    ) -> None:
        delay = backoff_seconds(task_obj, retries_done)
        if not mark_retrying(attempt, exception, delay, outcome="timed_out" if timed_out else "failed"):
            return  # a newer attempt owns the run; its own outcome will be recorded
        message.options["retries"] = retries_done + 1
        try:
            broker.enqueue(message.copy(), delay=int(delay * 1000))
        except Exception:
            # The row says ``retrying`` with no publish: the relay re-publishes it later.
            logger.exception("could not publish retry of run %s; left for the relay", attempt.run_id)
            from ..models import JobRun
            from ..recording import db_alias

            JobRun.objects.using(db_alias()).filter(pk=attempt.run_id).update(published_at=None)
            return
        logger.info(
            "run %s of %s failed (attempt %s); retry %s in %.1f s",
            attempt.run_id,
            task_obj.name,
            attempt.attempt,
            retries_done + 1,
            delay,
        )


# message id -> (context token, context). Hooks for one message run in the same worker thread.
_tokens: dict[str, tuple[Any, RunContext]] = {}
