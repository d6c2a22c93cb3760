"""The arguments of every RabbitMQ queue this project declares, and moving queues to new arguments.

A queue's type and arguments are fixed when it is created: RabbitMQ answers a redeclare with
other arguments with ``PRECONDITION_FAILED`` (406) and closes the channel. Switching
``FUSION_JOBS_QUEUE_TYPE`` (or ``MAX_PRIORITY``) therefore needs the queues recreated, with
their waiting messages moved across: :func:`migrate_queue`, run by ``manage.py migratequeues``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pika
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL
from dramatiq.common import dq_name, q_name, xq_name

from ..conf import broker_queue, jobs_settings

logger = logging.getLogger("fusion_jobs.broker")

#: Suffix of the holding queue a migration parks a queue's messages in (``<queue>.migrating``).
HOLDING_SUFFIX = ".migrating"


class QueueMismatch(Exception):
    """An existing queue was declared with other arguments (another type, priority or limit)."""

    def __init__(self, queue: str, detail: str) -> None:
        self.queue = queue
        super().__init__(
            f"RabbitMQ queue {queue!r} exists with other arguments than this configuration declares "
            f"({detail}); a queue's type and arguments cannot change in place: stop the workers, "
            "runcrons and the relay, then run `manage.py migratequeues` to move its waiting "
            "messages into a queue declared with the new arguments"
        )


def _type_arguments() -> dict[str, Any]:
    if jobs_settings.QUEUE_TYPE != "quorum":
        return {}
    arguments: dict[str, Any] = {"x-queue-type": "quorum"}
    limit = int(jobs_settings.DELIVERY_LIMIT)
    if limit:
        arguments["x-delivery-limit"] = limit
    return arguments


def main_arguments(physical: str) -> dict[str, Any]:
    """A work queue's (and its ``.DQ`` delay queue's) arguments; ``physical`` is the RabbitMQ name."""
    arguments: dict[str, Any] = {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": xq_name(physical),
    }
    max_priority = int(jobs_settings.MAX_PRIORITY)
    if max_priority:
        arguments["x-max-priority"] = max_priority
    arguments.update(_type_arguments())
    return arguments


def dead_letter_arguments() -> dict[str, Any]:
    """The ``.XQ`` queue's: dead messages kept for Dramatiq's week, never redelivered (no limit)."""
    arguments = {"x-message-ttl": DEAD_MESSAGE_TTL, **_type_arguments()}
    arguments.pop("x-delivery-limit", None)
    return arguments


def physical_queues(logical: str) -> list[tuple[str, dict[str, Any]]]:
    """The three RabbitMQ queues of a logical queue, with the arguments each is declared with."""
    physical = broker_queue(logical)
    main = main_arguments(physical)
    return [(physical, main), (dq_name(physical), main), (xq_name(physical), dead_letter_arguments())]


def _is_mismatch(exc: BaseException) -> bool:
    return isinstance(exc, pika.exceptions.ChannelClosedByBroker) and exc.reply_code == 406


def declare(channel: Any, queue: str, arguments: dict[str, Any]) -> Any:
    """``queue_declare`` (durable) that turns RabbitMQ's 406 into a :class:`QueueMismatch`.

    The channel is closed by RabbitMQ after a 406; the caller drops it (and its connection).
    """
    try:
        return channel.queue_declare(queue=queue, durable=True, arguments=arguments)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if _is_mismatch(exc):
            raise QueueMismatch(queue, exc.reply_text) from None
        raise


def check_queues(connection: pika.BlockingConnection, logical_queues: list[str]) -> str | None:
    """Declare every queue of ``logical_queues``; the first mismatch as one clear line, or None."""
    for logical in sorted({q_name(name) for name in logical_queues}):
        for queue, arguments in physical_queues(logical):
            channel = connection.channel()
            try:
                declare(channel, queue, arguments)
            except QueueMismatch as exc:
                return str(exc)
            if channel.is_open:
                channel.close()
    return None


# -- migration ------------------------------------------------------------------------------------


@dataclass
class Migration:
    """What :func:`migrate_queue` did to one RabbitMQ queue."""

    queue: str
    recreated: bool = False
    parked: int = 0
    """Messages moved from the old queue into the holding queue."""
    moved: int = 0
    """Messages moved from the holding queue into the new one (with any parked by a stopped run)."""


def _exists(connection: pika.BlockingConnection, queue: str) -> int | None:
    """The queue's consumer count, or None when it does not exist (a passive declare: 404)."""
    channel = connection.channel()
    try:
        frame = channel.queue_declare(queue=queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:
            return None
        raise
    channel.close()
    return int(frame.method.consumer_count)


def _matches(connection: pika.BlockingConnection, queue: str, arguments: dict[str, Any]) -> bool:
    channel = connection.channel()
    try:
        declare(channel, queue, arguments)
    except QueueMismatch:
        return False
    channel.close()
    return True


def _move(
    connection: pika.BlockingConnection,
    source: str,
    target: str,
    on_moved: Callable[[], None] | None = None,
) -> int:
    """Move every message from ``source`` to ``target``, each confirmed on ``target`` before its ack.

    At least once: a stop between one message's confirm and its ack leaves it in both queues
    (a redelivered run id that already finished is skipped by the worker); none is ever lost.
    """
    channel = connection.channel()
    channel.confirm_delivery()
    moved = 0
    for method, properties, body in _drain(channel, source):
        channel.basic_publish(
            exchange="", routing_key=target, body=body, properties=properties, mandatory=True
        )
        channel.basic_ack(method.delivery_tag)
        moved += 1
        if on_moved is not None:
            on_moved()
    channel.close()
    return moved


def _drain(channel: Any, queue: str) -> Iterator[tuple[Any, Any, bytes]]:
    while True:
        method, properties, body = channel.basic_get(queue=queue, auto_ack=False)
        if method is None:
            return
        yield method, properties, body


def migrate_queue(
    connection: pika.BlockingConnection,
    queue: str,
    arguments: dict[str, Any],
    *,
    on_moved: Callable[[], None] | None = None,
) -> Migration:
    """Recreate ``queue`` with ``arguments``, keeping its messages; safe to rerun after any stop.

    Steps, each resumable: (1) the old queue's messages move to ``<queue>.migrating`` (a plain
    classic queue), (2) the old queue is deleted only when empty (``if_empty``: a message that
    arrived meanwhile is moved on the next pass), (3) the queue is declared with the new
    arguments, (4) the holding queue's messages move into it and the holding queue is deleted.
    Messages are only ever acked after the copy is confirmed, so nothing is lost midway.
    Consumers must be stopped: a queue with consumers is refused.
    """
    result = Migration(queue)
    holding = queue + HOLDING_SUFFIX
    consumers = _exists(connection, queue)
    if consumers:
        raise RuntimeError(f"queue {queue!r} has {consumers} consumer(s): stop the workers first")
    if consumers is not None and not _matches(connection, queue, arguments):
        holder = connection.channel()
        holder.queue_declare(queue=holding, durable=True)
        holder.close()
        while True:
            result.parked += _move(connection, queue, holding, on_moved)
            channel = connection.channel()
            try:
                channel.queue_delete(queue=queue, if_empty=True)
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code != 406:  # 406: not empty, a message arrived: move it too
                    raise
                continue
            channel.close()
            break
        result.recreated = True
    channel = connection.channel()
    declare(channel, queue, arguments)
    channel.close()
    if _exists(connection, holding) is not None:
        result.moved = _move(connection, holding, queue, on_moved)
        channel = connection.channel()
        channel.queue_delete(queue=holding, if_empty=True)
        channel.close()
    return result
