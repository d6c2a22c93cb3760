"""The broker backend: Dramatiq on RabbitMQ through pika, built only when jobs are enabled.

Nothing here is imported by ``import fusion_jobs`` or by the web process while no broker is
configured, so pika is never loaded and no connection is attempted there.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import dramatiq
import pika
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.common import dq_name, xq_name
from dramatiq.errors import ConnectionClosed

from .. import metrics
from ..conf import broker_queue, jobs_settings
from ..context import current
from ..encoder import StrictJSONEncoder
from ..exceptions import PublishError, TaskArgumentsError
from ..middleware import build_stack
from ..middleware.validation import QueueCheckedConsumer, before_process_fail_closed
from ..models import GATE_BROKER
from ..registry import Task, all_tasks, on_register
from ..utils import mask_url, scrub
from .base import Outgoing
from .confirms import ConfirmingPublisher, Envelope
from .connection import connection_parameters
from .connection import describe_refusal as describe_refusal  # also imported from here (rundramatiq)
from .connection import open_connection as open_connection  # also imported from here (commands)
from .messages import broker_priority, build_message, encode_message
from .publisher import PublisherPool, publish_raw
from .queued import QueuingBackend
from .queues import dead_letter_arguments, declare, main_arguments

if TYPE_CHECKING:
    from dramatiq import Actor

logger = logging.getLogger("fusion_jobs.broker")

_lock = threading.RLock()
_broker: RabbitmqBroker | None = None
_broker_url: str | None = None


def _new_lock_in_child() -> None:
    """A lock another thread held at a fork stays held for ever in the child: give it a new one."""
    global _lock
    _lock = threading.RLock()


os.register_at_fork(after_in_child=_new_lock_in_child)


class FusionRabbitmqBroker(RabbitmqBroker):
    """RabbitmqBroker with publisher confirms and bounded, password-free connection errors."""

    def __init__(self, url: str, middleware: list[Any]) -> None:
        # FUSION_JOBS_MAX_PRIORITY: every queue declared with x-max-priority (opt-in: RabbitMQ
        # refuses to redeclare an existing queue with other arguments, PRECONDITION_FAILED).
        max_priority = int(jobs_settings.MAX_PRIORITY) or None
        super().__init__(confirm_delivery=True, middleware=middleware, max_priority=max_priority)
        self.parameters = connection_parameters(url)
        self.safe_url = mask_url(url)

    def __repr__(self) -> str:
        return f"<FusionRabbitmqBroker {self.safe_url}>"

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        """A consumer that dead-letters messages claiming another queue (see middleware.validation)."""
        return QueueCheckedConsumer(super().consume(queue_name, prefetch, timeout), queue_name)

    def emit_before(self, signal: str, *args: Any, **kwargs: Any) -> None:
        """Fail closed before a message runs: a middleware error refuses it instead of being logged."""
        if signal == "process_message":
            before_process_fail_closed(self, *args)
        else:
            super().emit_before(signal, *args, **kwargs)

    # Queue namespace (FUSION_JOBS_QUEUE_NAMESPACE): messages, actors, run rows and Dramatiq's
    # bookkeeping use the logical queue name ("default"); only the names given to RabbitMQ are
    # prefixed ("shop.default", "shop.default.DQ", "shop.default.XQ"), so every declare, publish
    # and consume below goes through ``broker_queue``.

    @property
    def consumer_class(self) -> Any:
        base = super().consumer_class

        def consumer(broker: RabbitmqBroker, queue_name: str, prefetch: int, timeout: int) -> Any:
            made = base(broker, broker_queue(queue_name), prefetch, timeout)
            made.queue_name = queue_name  # what its messages name, and what Dramatiq tracks
            return made

        return consumer

    # Queue arguments (type, priority, delivery limit) come from backends.queues; a queue that
    # exists with others raises QueueMismatch (not a channel error Dramatiq would retry).
    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        return main_arguments(broker_queue(queue_name))

    def _declare_queue(self, queue_name: str) -> Any:
        return declare(self.channel, broker_queue(queue_name), self._build_queue_arguments(queue_name))

    def _declare_dq_queue(self, queue_name: str) -> Any:
        return declare(
            self.channel, dq_name(broker_queue(queue_name)), self._build_queue_arguments(queue_name)
        )

    def _declare_xq_queue(self, queue_name: str) -> Any:
        return declare(self.channel, xq_name(broker_queue(queue_name)), dead_letter_arguments())

    def flush(self, queue_name: str) -> None:
        for name in (queue_name, dq_name(queue_name), xq_name(queue_name)):
            self.channel.queue_purge(broker_queue(name))

    def enqueue(self, message: Any, *, delay: int | None = None) -> Any:
        """Dramatiq's own publishes (a delayed message come due, a requeue) take the confirmed path."""
        self.emit_before("enqueue", message, delay)
        try:
            _publish_raw(self, [(message, delay)])
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as exc:
            raise ConnectionClosed(exc) from None
        self.emit_after("enqueue", message, delay)
        return message


def get_broker() -> RabbitmqBroker:
    """The process's broker, built on first use from FUSION_JOBS_BROKER_URL, with every task declared."""
    global _broker, _broker_url
    url = str(jobs_settings.BROKER_URL or "")
    if not url:
        raise PublishError("no broker configured (FUSION_JOBS_BROKER_URL is empty)")
    with _lock:
        if _broker is not None and _broker_url == url:
            return _broker
        broker = FusionRabbitmqBroker(url, build_stack())
        dramatiq.set_encoder(StrictJSONEncoder())
        dramatiq.set_broker(broker)
        _broker, _broker_url = broker, url
        for task_obj in all_tasks().values():
            declare_actor(task_obj, broker)
    return broker


def reset_broker() -> None:
    """Forget the built broker (tests that switch URLs); closes its connections."""
    global _broker, _broker_url
    with _lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()
        for confirming in _confirming.values():
            confirming.close(float(jobs_settings.PUBLISH_TIMEOUT))
            atexit.unregister(confirming.close)
        _confirming.clear()
        _declared.clear()
        if _broker is not None:
            try:
                _broker.close()
            except Exception:  # closing a dead connection is best effort
                logger.debug("error closing broker", exc_info=True)
        _broker, _broker_url = None, None


def _run_task(task_obj: Task) -> Any:
    def run(**kwargs: Any) -> None:
        task_obj.check_arguments(kwargs)  # TaskArgumentsError names the task: not retried
        result = task_obj.fn(**kwargs)
        ctx = current()
        if ctx is not None:
            ctx.result = result
        # The result is stored by RunLifecycle; returning None keeps Dramatiq from warning
        # about a missing results backend.

    run.__name__ = task_obj.fn.__name__
    run.__qualname__ = task_obj.fn.__qualname__
    run.__module__ = task_obj.fn.__module__
    return run


def declare_actor(task_obj: Task, broker: RabbitmqBroker | None = None) -> Actor:
    broker = broker or get_broker()
    if broker.actors.get(task_obj.name) is not None:
        existing: Actor = broker.get_actor(task_obj.name)
        return existing
    decorate = dramatiq.actor(
        actor_name=task_obj.name,
        queue_name=task_obj.effective_queue,
        broker=broker,
        time_limit=int(task_obj.effective_timeout * 1000),
        max_retries=task_obj.effective_max_retries,
        throws=(TaskArgumentsError,),
    )
    return decorate(_run_task(task_obj))


def _declare_if_built(task_obj: Task) -> None:
    with _lock:
        if _broker is not None:
            declare_actor(task_obj, _broker)


on_register(_declare_if_built)


_pools: dict[tuple[int, int], PublisherPool] = {}


def _pool(broker: RabbitmqBroker) -> PublisherPool:
    key = (id(broker), os.getpid())  # a forked child opens its own: never the parent's sockets
    pool = _pools.get(key)
    if pool is None:
        with _lock:
            pool = _pools.setdefault(key, PublisherPool(broker))
    return pool


def keep_publishers_alive() -> int:
    """Keep the built broker's idle publishing connections alive (see ``PublisherPool.keep_alive``).

    For a process that publishes rarely (``runcrons``); returns how many dropped connections were
    discarded, so the next publish opens a new one instead of starting on a broken one.
    """
    with _lock:
        pool = _pools.get((id(_broker), os.getpid())) if _broker is not None else None
    return pool.keep_alive() if pool is not None else 0


def _publish_raw(broker: RabbitmqBroker, messages: list[tuple[Any, int | None]]) -> None:
    publish_raw(_pool(broker), messages, float(jobs_settings.PUBLISH_TIMEOUT))


def publish(
    task_obj: Task,
    run_id: str,
    kwargs: dict[str, Any],
    *,
    delay_ms: int | None = None,
    traceparent: str | None = None,
) -> None:
    """Publish one message with publisher confirms; PublishError (password-free) on any failure.

    ``traceparent``: the W3C trace context of the enqueue (``fusion_jobs.tracing``), carried as an option.
    """
    publish_many([(task_obj, run_id, kwargs, delay_ms)], traceparents=[traceparent])


def publish_many(
    items: list[tuple[Task, str, dict[str, Any], int | None]],
    *,
    retries: list[int] | None = None,
    traceparents: list[str | None] | None = None,
    on_confirmed: Callable[[list[str]], None] | None = None,
) -> None:
    """Publish several runs' messages, each confirmed by the broker; PublishError on any failure.

    With confirms on, RabbitMQ acknowledges a persistent message only once it is on disk, so a
    message that returned from here survives a broker crash. With ``on_confirmed``, for runs
    whose rows are already on disk, the call does not wait: the messages go to the process's
    confirming publisher (``backends.confirms``), which calls ``on_confirmed`` with the runs as
    their confirms come. ``PublishError`` then means no connection (nothing was sent); a message
    lost after the hand-off is never confirmed, so its run is left for the relay.
    """
    url = str(jobs_settings.BROKER_URL or "")
    started = time.monotonic()
    try:
        broker = get_broker()
        messages = []
        levels: dict[str, int | None] = {}
        for index, (task_obj, run_id, kwargs, delay_ms) in enumerate(items):
            if task_obj.name not in levels:
                declare_actor(task_obj, broker)
                levels[task_obj.name] = broker_priority(task_obj.priority)
            options: dict[str, Any] = {"retries": retries[index]} if retries and retries[index] else {}
            if traceparents and traceparents[index]:
                options["traceparent"] = traceparents[index]
            message = build_message(task_obj, run_id, kwargs, options, level=levels[task_obj.name])
            messages.append((message, delay_ms))
        if on_confirmed is None or any(delay_ms is not None for _, delay_ms in messages):
            _publish_raw(broker, messages)
            if on_confirmed is not None:
                on_confirmed([run_id for _, run_id, *_ in items])
        else:
            _hand_off(broker, [message for message, _ in messages], on_confirmed)
    except PublishError:
        raise
    except Exception as exc:
        for queue in {task_obj.effective_queue for task_obj, *_ in items}:
            metrics.publish_error(queue)
        detail = scrub(f"{type(exc).__name__}: {exc}", url)
        what = f"{items[0][0].name} run {items[0][1]}" if len(items) == 1 else f"{len(items)} runs"
        raise PublishError(
            f"could not publish {what} to {mask_url(url)} after {time.monotonic() - started:.1f} s: {detail}"
        ) from None


_confirming: dict[tuple[int, int], ConfirmingPublisher] = {}
_declared: set[tuple[int, str]] = set()


def _hand_off(broker: RabbitmqBroker, messages: list[Any], on_confirmed: Callable[[list[str]], None]) -> None:
    """Give the messages to the process's confirming publisher; each queue is declared once first.

    The publisher is made by the first hand-off, with its ``on_confirmed``.
    """
    queues = {message.queue_name for message in messages}
    for queue in queues:
        if (id(broker), queue) not in _declared:
            with _pool(broker).lease() as publisher:
                publisher.declare(queue)  # QueueMismatch, a connection error: the caller's policy
            _declared.add((id(broker), queue))
    key = (id(broker), os.getpid())  # a forked child starts its own threads
    confirming = _confirming.get(key)
    if confirming is None:
        with _lock:
            confirming = _confirming.get(key)
            if confirming is None:
                timeout = float(jobs_settings.PUBLISH_TIMEOUT)
                confirming = ConfirmingPublisher(broker.parameters, on_confirmed, connect_timeout=timeout)
                _confirming[key] = confirming
                atexit.register(confirming.close, timeout)
    physical = {queue: broker_queue(queue) for queue in queues}
    confirming.publish(
        [
            Envelope(
                run_id=message.message_id,
                routing_key=physical[message.queue_name],
                body=encode_message(message),
                priority=message.options.get("broker_priority"),
            )
            for message in messages
        ]
    )


def flush_publishes(timeout: float) -> bool:
    """Wait until every message this process handed off is confirmed, refused or lost; False
    when ``timeout`` ran out first."""
    deadline = time.monotonic() + timeout
    return all(
        confirming.flush(max(0.0, deadline - time.monotonic())) for confirming in list(_confirming.values())
    )


class BrokerBackend(QueuingBackend):
    """Runs go to Dramatiq workers through RabbitMQ, each message confirmed by the broker."""

    gate = GATE_BROKER

    def publish(self, messages: Sequence[Outgoing]) -> None:
        publish_many(
            [(m.task, m.run_id, m.kwargs, None) for m in messages],
            retries=[m.retries for m in messages],
            traceparents=[m.traceparent for m in messages],
        )

    def hand_off(self, messages: Sequence[Outgoing], on_confirmed: Callable[[list[str]], None]) -> None:
        publish_many(
            [(m.task, m.run_id, m.kwargs, None) for m in messages],
            retries=[m.retries for m in messages],
            traceparents=[m.traceparent for m in messages],
            on_confirmed=on_confirmed,
        )
