"""Publishing connections shared by a process's threads.

Dramatiq keeps one pika connection per thread. A web server that starts a thread per request
(Django's runserver, some WSGI servers) then opens a new AMQP connection for every request and
never closes it (dramatiq#381). Here a small pool lends a connection to one thread at a time:
pika connections are not thread-safe, but a connection used by one thread at a time is fine.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pika
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.common import dq_name

from ..conf import broker_queue
from .messages import encode_message
from .queues import declare, physical_queues

logger = logging.getLogger("fusion_jobs.broker")

#: Idle connections kept per process; more threads publishing at once get extra ones, closed after.
MAX_IDLE = 4


class PooledPublisher:
    """One connection with a confirm channel (single messages) and a transaction channel (batches)."""

    def __init__(self, broker: RabbitmqBroker) -> None:
        self.broker = broker
        self.connection = pika.BlockingConnection(broker.parameters)
        self.confirm = self.connection.channel()
        self.confirm.confirm_delivery()
        self._tx: Any = None
        self.declared: set[str] = set()

    @property
    def tx(self) -> Any:
        if self._tx is None:
            self._tx = self.connection.channel()
            self._tx.tx_select()
        return self._tx

    def declare(self, queue: str) -> None:
        """Declare the queue and its delay and dead-letter queues as Dramatiq does, once per connection.

        ``queue`` is the logical name; RabbitMQ gets it inside the queue namespace (``broker_queue``).
        """
        physical = broker_queue(queue)
        if physical in self.declared:
            return
        for name, arguments in physical_queues(queue):  # QueueMismatch on a queue of another type
            declare(self.confirm, name, arguments)
        self.declared.add(physical)

    @property
    def healthy(self) -> bool:
        return bool(
            self.connection.is_open and self.confirm.is_open and (self._tx is None or self._tx.is_open)
        )

    def close(self) -> None:
        try:
            if self.connection.is_open:
                self.connection.close()
        except Exception:  # closing a broken connection is best effort
            logger.debug("error closing a publishing connection", exc_info=True)


class PublisherPool:
    def __init__(self, broker: RabbitmqBroker) -> None:
        self.broker = broker
        self._idle: list[PooledPublisher] = []
        self._lock = threading.Lock()

    @contextmanager
    def lease(self) -> Iterator[PooledPublisher]:
        """Borrow a publisher; a broken one is closed instead of returned."""
        with self._lock:
            publisher = self._idle.pop() if self._idle else None
        if publisher is None or not publisher.healthy:
            if publisher is not None:
                publisher.close()
            publisher = PooledPublisher(self.broker)
        try:
            yield publisher
        except BaseException:
            publisher.close()
            raise
        with self._lock:
            if publisher.healthy and len(self._idle) < MAX_IDLE:
                self._idle.append(publisher)
                return
        publisher.close()

    def keep_alive(self) -> int:
        """Service the idle connections' heartbeats; close those the broker dropped (how many).

        pika's BlockingConnection answers heartbeats only while it is used: an idle one is dropped
        by RabbitMQ as dead. Only idle connections are touched, never one a thread is publishing on.
        """
        with self._lock:
            idle, self._idle = self._idle, []
        kept, dropped = [], 0
        for publisher in idle:
            try:
                if publisher.healthy:
                    publisher.connection.process_data_events(time_limit=0)
                if not publisher.healthy:
                    raise ConnectionError("connection or channel closed")
                kept.append(publisher)
            except Exception as exc:
                dropped += 1
                logger.info(
                    "broker connection lost (%s: %s); a new one is opened at the next publish",
                    type(exc).__name__,
                    exc,
                )
                publisher.close()
        with self._lock:
            self._idle.extend(kept)
        return dropped

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for publisher in idle:
            publisher.close()


def publish_raw(pool: PublisherPool, messages: list[tuple[Any, int | None]], timeout: float) -> None:
    """Publish persistent messages: one on a confirm channel, a batch in one AMQP transaction.

    With confirms (and ``mandatory``) RabbitMQ acknowledges a message once it is routed and on
    disk; ``tx.commit`` does the same for a whole batch in one round trip. One connection retry
    covers a connection the broker closed while idle (missed heartbeats); Dramatiq's own
    ``enqueue`` retries six times, which can hold a web request for many seconds.
    """
    deadline = time.monotonic() + timeout
    for attempt in (1, 2):
        try:
            with pool.lease() as publisher:
                batch = len(messages) > 1
                channel = publisher.tx if batch else publisher.confirm
                for message, delay_ms in messages:
                    routing_key = broker_queue(message.queue_name)
                    body_message = message
                    publisher.declare(message.queue_name)
                    if delay_ms is not None:
                        routing_key = dq_name(routing_key)
                        body_message = message.copy(
                            queue_name=dq_name(message.queue_name),
                            options={**message.options, "eta": int(time.time() * 1000) + delay_ms},
                        )
                    channel.basic_publish(
                        exchange="",
                        routing_key=routing_key,
                        body=encode_message(body_message),
                        properties=pika.BasicProperties(
                            delivery_mode=2, priority=message.options.get("broker_priority")
                        ),
                        mandatory=not batch,
                    )
                if batch:
                    channel.tx_commit()
            return
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError):
            if attempt == 2 or time.monotonic() >= deadline:
                raise
