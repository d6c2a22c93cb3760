"""Worker run metrics (``fusion_jobs.metrics``): started, outcome, duration, queue wait, in progress.

Placed right after ``RunLifecycle`` in the stack: its ``before_process_message`` runs only for a
message whose start RunLifecycle recorded (a skipped one raised ``SkipMessage`` first, which
Dramatiq reports to every middleware's ``after_skip_message``), and its ``after_process_message``
runs before RunLifecycle's, while the outcome is still the task's.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from dramatiq import Broker, Middleware
from dramatiq.broker import MessageProxy
from dramatiq.middleware.time_limit import TimeLimitExceeded

from .. import metrics
from ..exceptions import TaskArgumentsError
from ..registry import get_task


def outcome_of(message: MessageProxy, exception: BaseException | None) -> str:
    """What RunLifecycle will make of this attempt: succeeded, retried, timed_out or failed.

    The same rule as ``RunLifecycle.after_process_message``: a retry needs a retryable error
    (not bad arguments; a timeout only for ``retry_on_timeout`` tasks) and retries left.
    """
    if exception is None:
        return "succeeded"
    task_obj = get_task(message.actor_name)
    timed_out = isinstance(exception, TimeLimitExceeded)
    retryable = not isinstance(exception, TaskArgumentsError) and (not timed_out or task_obj.retry_on_timeout)
    if retryable and int(message.options.get("retries", 0)) < task_obj.effective_max_retries:
        return "retried"
    return "timed_out" if timed_out else "failed"


class RunMetrics(Middleware):
    def __init__(self) -> None:
        self._started: dict[int, float] = {}
        self._lock = threading.Lock()

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        wait = time.time() - message.message_timestamp / 1000 if message.message_timestamp else None
        metrics.run_started(message.actor_name, message.queue_name, wait)
        with self._lock:
            self._started[id(message)] = time.monotonic()

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        with self._lock:
            started = self._started.pop(id(message), None)
        if started is None:
            return
        metrics.run_ended(
            message.actor_name, message.queue_name, outcome_of(message, exception), time.monotonic() - started
        )

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        with self._lock:
            started = self._started.pop(id(message), None)
        if started is not None:  # refused by a middleware after this one, once started
            metrics.run_ended(message.actor_name, message.queue_name, "failed", time.monotonic() - started)
        else:
            metrics.run_skipped(message.actor_name, message.queue_name)
