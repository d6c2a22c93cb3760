"""Publishing without waiting for the broker: an I/O thread collects the confirms as they come.

For messages whose runs are durable already (``enqueue_many``: its rows are committed before
the hand-off), waiting for RabbitMQ's confirms only holds the caller. :class:`ConfirmingPublisher`
takes the messages, an I/O thread publishes them at once on a confirm channel, a stream rather
than an AMQP transaction, and passes each confirmed run to ``on_confirmed`` (which marks it
published, ``fusion_jobs.marking``) while the caller goes on. A message that is nacked, returned (no queue) or lost with its
connection is simply not marked: the relay publishes its run again, and the worker runs each
attempt once however many copies arrive. A process that exits flushes what it can (``atexit``);
one that dies leaves the rest to the relay too.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pika
from pika.adapters.select_connection import SelectConnection
from pika.spec import Basic

from ..exceptions import PublishError

logger = logging.getLogger("fusion_jobs.broker")


@dataclass(frozen=True)
class Envelope:
    """One persistent message for a run: where it goes (a RabbitMQ queue name) and its body."""

    run_id: str
    routing_key: str
    body: bytes
    priority: int | None = None


class _Link:
    """One connection and its confirm channel, driven by an I/O thread; replaced once it closes."""

    def __init__(
        self, parameters: pika.ConnectionParameters, on_confirmed: Callable[[list[str]], None]
    ) -> None:
        self._parameters = parameters
        self._on_confirmed = on_confirmed
        self.ready = threading.Event()
        self.closed = False
        self.blocked = False
        self.error = ""
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._waiting: list[Envelope] = []  # handed over, not yet given to pika
        self._scheduled = False
        self._unconfirmed: dict[int, str] = {}  # delivery tag -> run id
        self._unsettled = 0  # handed over and neither confirmed, refused nor lost
        self._returned: set[str] = set()
        self._tag = 0
        self._connection: SelectConnection | None = None
        self._channel: Any = None
        self._thread = threading.Thread(target=self._loop, name="fusion-jobs-publisher", daemon=True)
        self._thread.start()

    # -- caller threads ----------------------------------------------------------------------------

    def send(self, messages: Sequence[Envelope]) -> bool:
        """Hand messages to the I/O thread; False (nothing taken) when the link is closed or blocked."""
        with self._lock:
            if self.closed or self.blocked or self._connection is None:
                return False
            self._waiting.extend(messages)
            self._unsettled += len(messages)
            if self._scheduled:
                return True
            self._scheduled = True
            connection = self._connection
        try:
            connection.ioloop.add_callback_threadsafe(self._publish_waiting)
        except Exception:  # the loop closed meanwhile: what was handed over is the relay's
            logger.debug("publisher loop closed", exc_info=True)
            self._give_up("the publishing connection closed")
            return False
        return True

    def settled(self, timeout: float) -> bool:
        """Wait until every message handed over is confirmed, refused or lost; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._unsettled == 0, timeout)

    def close(self, timeout: float) -> None:
        with self._lock:
            connection = None if self.closed else self._connection
        if connection is not None:
            try:
                connection.ioloop.add_callback_threadsafe(self._close)
            except Exception:  # the loop is gone already
                logger.debug("publisher loop already stopped", exc_info=True)
        self._thread.join(timeout)

    # -- the I/O thread ----------------------------------------------------------------------------

    def _loop(self) -> None:
        connection = None
        try:
            connection = SelectConnection(
                self._parameters,
                on_open_callback=self._opened,
                on_open_error_callback=self._open_failed,
                on_close_callback=self._closed,
            )
            connection.add_on_connection_blocked_callback(self._on_blocked)
            connection.add_on_connection_unblocked_callback(self._on_unblocked)
            with self._lock:
                self._connection = connection
            connection.ioloop.start()
        except Exception as exc:
            self._give_up(f"{type(exc).__name__}: {exc}")
            logger.debug("publisher thread failed", exc_info=True)
        finally:
            self._give_up("the publishing connection closed")
            if connection is not None:
                connection.ioloop.close()  # its poller and wake-up pipe

    def _opened(self, connection: Any) -> None:
        connection.channel(on_open_callback=self._channel_opened)

    def _channel_opened(self, channel: Any) -> None:
        self._channel = channel
        channel.add_on_close_callback(self._channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(ack_nack_callback=self._on_confirm, callback=lambda _frame: self.ready.set())

    def _open_failed(self, connection: Any, exc: BaseException) -> None:
        self.error = f"{type(exc).__name__}: {exc}"
        connection.ioloop.stop()

    def _closed(self, connection: Any, reason: BaseException) -> None:
        if not self.error:
            self.error = f"{type(reason).__name__}: {reason}"
        connection.ioloop.stop()

    def _channel_closed(self, channel: Any, reason: BaseException) -> None:
        self.error = f"{type(reason).__name__}: {reason}"
        self._close()

    def _close(self) -> None:
        """Close the connection, also one still opening (pika aborts its handshake)."""
        connection = self._connection
        if connection is not None and not (connection.is_closing or connection.is_closed):
            connection.close()

    def _on_blocked(self, _connection: Any, _frame: Any) -> None:
        self.blocked = True

    def _on_unblocked(self, _connection: Any, _frame: Any) -> None:
        self.blocked = False

    def _publish_waiting(self) -> None:
        with self._lock:
            messages, self._waiting = self._waiting, []
            self._scheduled = False
        channel = self._channel
        for message in messages:
            self._tag += 1
            self._unconfirmed[self._tag] = message.run_id
            channel.basic_publish(
                exchange="",
                routing_key=message.routing_key,
                body=message.body,
                properties=pika.BasicProperties(
                    delivery_mode=2, priority=message.priority, message_id=message.run_id
                ),
                mandatory=True,  # no queue: returned, so not marked, so the relay tries again
            )

    def _on_return(self, _channel: Any, _method: Any, properties: Any, _body: bytes) -> None:
        self._returned.add(properties.message_id)  # its ack follows

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        tag = method.delivery_tag
        ids = []
        if method.multiple:
            while self._unconfirmed:
                first = next(iter(self._unconfirmed))
                if first > tag:
                    break
                ids.append(self._unconfirmed.pop(first))
        elif tag in self._unconfirmed:
            ids.append(self._unconfirmed.pop(tag))
        if isinstance(method, Basic.Ack):
            confirmed = [run_id for run_id in ids if run_id not in self._returned]
            self._returned.difference_update(ids)
        else:
            confirmed = []
            logger.warning("RabbitMQ refused %d message(s); the outbox relay publishes them again", len(ids))
        if confirmed:
            self._on_confirmed(confirmed)
        with self._cond:
            self._unsettled -= len(ids)
            self._cond.notify_all()

    def _give_up(self, why: str) -> None:
        with self._cond:
            if self.closed:
                return
            self.closed = True
            self.error = self.error or why
            lost = self._unsettled
            self._unsettled = 0
            self._waiting = []
            self._cond.notify_all()
        self.ready.set()
        if lost:
            logger.warning(
                "%d message(s) were not confirmed before their connection closed (%s); the outbox "
                "relay publishes them again",
                lost,
                self.error,
            )


class ConfirmingPublisher:
    """A process's publisher that does not wait for confirms; see the module docstring.

    ``on_confirmed`` gets the run ids of confirmed messages, from the I/O thread.
    """

    def __init__(
        self,
        parameters: pika.ConnectionParameters,
        on_confirmed: Callable[[list[str]], None],
        *,
        connect_timeout: float,
    ) -> None:
        self._parameters = parameters
        self._on_confirmed = on_confirmed
        self._connect_timeout = connect_timeout
        self._link: _Link | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()

    def publish(self, messages: Sequence[Envelope]) -> None:
        """Hand the messages over for publishing; ``PublishError`` when there is no open connection.

        Waits only to connect (at most ``connect_timeout``): a broker that is down, refuses the
        login or is blocked by a resource alarm raises here, so the caller's publish-error policy
        applies, as it does to a confirmed publish.
        """
        link = self._open_link()
        if not link.send(messages):
            raise PublishError(f"RabbitMQ publishing connection unavailable: {self._why(link)}")

    def _why(self, link: _Link) -> str:
        if link.blocked:
            return "the broker blocks publishers (resource alarm)"
        return link.error or "closed"

    def _open_link(self) -> _Link:
        with self._lock:
            if self._closed:
                raise PublishError("the publisher is closed")
            link = self._link
            if link is None or link.closed:
                link = self._link = _Link(self._parameters, self._on_confirmed)
        if not link.ready.wait(self._connect_timeout):
            link.close(0)
            raise PublishError(f"could not connect to RabbitMQ within {self._connect_timeout:g} s")
        if link.closed:
            raise PublishError(f"could not connect to RabbitMQ: {self._why(link)}")
        return link

    def flush(self, timeout: float) -> bool:
        """Wait until every message handed over is confirmed, refused or lost; False on timeout."""
        link = self._link
        return link is None or link.settled(timeout)

    def close(self, timeout: float) -> None:
        """Flush, then stop the I/O thread; what is still unconfirmed is left to the relay.

        A forked child inherits this exit handler but not the I/O thread: it leaves the parent's
        connection alone.
        """
        if os.getpid() != self._pid:
            return
        self.flush(timeout)
        with self._lock:
            self._closed = True
            link, self._link = self._link, None
        if link is not None:
            link.close(timeout)


__all__ = ["ConfirmingPublisher", "Envelope"]
