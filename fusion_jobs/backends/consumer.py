"""The RabbitMQ consumer of a worker process: Dramatiq's, with acks coalesced into one wake-up.

Dramatiq acks each message from its worker thread by scheduling a callback on the consumer
thread's pika connection, and every such callback wakes that thread (a pipe write, a poll, a
frame). Group commit makes the outcomes of a batch durable at the same moment, so their worker
threads ack in a burst; here the burst's acks share one callback and one wake-up. Each message
is still acked on its own delivery tag, only after its worker thread hands it over, so nothing
about when a message is acked changes.
"""

from __future__ import annotations

import threading
from typing import Any

import pika
from dramatiq.brokers.rabbitmq import ConnectionClosed, _RabbitmqConsumer


class CoalescingConsumer(_RabbitmqConsumer):
    def __init__(self, broker: Any, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)
        self._acks_lock = threading.Lock()
        self._pending_acks: list[int] = []

    def ack(self, message: Any) -> None:
        try:
            self.known_tags.remove(message._tag)
        except KeyError:
            self.logger.warning("Failed to ack message: not in known tags.")
            return
        with self._acks_lock:
            self._pending_acks.append(message._tag)
            first = len(self._pending_acks) == 1
        if not first:
            return  # the callback scheduled for the first pending ack sends this one too
        try:
            self.connection.add_callback_threadsafe(self._send_acks)
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as e:
            raise ConnectionClosed(e) from None

    def _send_acks(self) -> None:
        """Runs on the consumer thread: ack every tag handed over since the callback was scheduled."""
        with self._acks_lock:
            tags, self._pending_acks = self._pending_acks, []
        for tag in tags:
            self.channel.basic_ack(tag)
