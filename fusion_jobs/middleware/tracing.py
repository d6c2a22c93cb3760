"""A consumer span per worker attempt, continuing the trace of the ``enqueue()`` that published it.

Placed after ``RunLifecycle``: the span opens only for an attempt whose start was recorded (its
number is known then) and is current while the task runs, so spans the task makes are its
children. The ``traceparent`` option was validated by the encoder (``fusion_jobs.tracing``).
"""

from __future__ import annotations

import threading
from typing import Any

from dramatiq import Broker, Middleware
from dramatiq.broker import MessageProxy

from .. import tracing
from ..conf import broker_queue
from ..context import current


class RunTracing(Middleware):
    def __init__(self) -> None:
        self._spans: dict[int, tracing.ConsumerSpan] = {}
        self._lock = threading.Lock()

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        if not tracing.enabled():
            return
        ctx = current()
        span = tracing.start_consumer(
            message.actor_name,
            broker_queue(message.queue_name),
            message.message_id,
            ctx.attempt.attempt if ctx else 0,
            traceparent=message.options.get("traceparent"),
        )
        if span is not None:
            with self._lock:
                self._spans[id(message)] = span

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        with self._lock:
            span = self._spans.pop(id(message), None)
        if span is not None:
            span.end(exception)

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        with self._lock:
            span = self._spans.pop(id(message), None)
        if span is not None:
            span.end()
