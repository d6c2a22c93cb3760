"""The outbox relay inside each worker process, and delayed messages parked instead of held.

``rundramatiq`` alone publishes due runs (retries, ``enqueue_at()``) and republishes lost ones:
each worker process runs the relay in a thread (see ``fusion_jobs.relay``).

A message that arrives with an ``eta`` in the future (from an older publisher, or crafted) is not
kept in the worker's delay queue, where Dramatiq would hold it unacked in the prefetch until its
time: a day-ahead message there would fill the prefetch, and RabbitMQ's ``consumer_timeout``
would close the channel and redeliver it, in a loop. Its run is parked in the database instead
(``next_attempt_at`` = the eta, unpublished) and the message is acked; the relay publishes the run
when it is due.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError, DataError
from django.utils import timezone
from dramatiq import Broker, Middleware
from dramatiq.broker import MessageProxy
from dramatiq.common import q_name

from ..exceptions import UnknownTaskError
from ..relay import POLL_INTERVAL, park, start_relay_thread

logger = logging.getLogger("fusion_jobs.worker")

_OUTCOMES = {
    "parked": "its run waits in the database",
    "created": "a run row was written for it and waits in the database",
    "stale": "its run is no longer waiting, dropped",
}


def _eta_time(eta: Any) -> datetime | None:
    """The eta (milliseconds since the epoch) as a datetime when it is still ahead, else None."""
    if isinstance(eta, bool) or not isinstance(eta, int | float) or eta <= time.time() * 1000:
        return None
    try:
        when = datetime.fromtimestamp(eta / 1000, tz=UTC)
    except (OverflowError, ValueError, OSError):
        when = datetime.max.replace(tzinfo=UTC)
    return when if settings.USE_TZ else timezone.make_naive(when)


def park_delayed_message(message: MessageProxy) -> bool:
    """Park a message whose eta is ahead so its run waits in the database; True: ack the message.

    A message that can't be parked for what it carries (not a run id, an unknown task, content
    the database refuses) loses its eta and goes on at once to the checks every message meets
    before it runs, instead of waiting unacked in the prefetch. During a database outage it is
    left to Dramatiq's delay queue (False), as before.
    """
    when = _eta_time(message.options.get("eta"))
    if when is None:
        return False
    run_id = str(message.message_id)
    try:
        uuid.UUID(run_id)
        outcome = park(
            run_id,
            task_name=str(message.actor_name),
            queue=q_name(str(message.queue_name)),
            kwargs=dict(message.kwargs),
            not_before=when,
        )
    except (ValueError, TypeError, UnknownTaskError, DataError) as exc:
        logger.warning("delayed message %s can't be parked (%s); it goes on now", run_id, exc)
        message.options.pop("eta", None)
        return False
    except DatabaseError as exc:
        logger.warning("could not park delayed message %s (database unavailable): %s", run_id, exc)
        return False
    logger.info(
        "delayed message %s (%s, due %s) acked: %s; the relay publishes it when due",
        run_id,
        message.actor_name,
        when.isoformat(timespec="seconds"),
        _OUTCOMES[outcome],
    )
    return True


class OutboxRelay(Middleware):
    def __init__(self, interval: float = POLL_INTERVAL) -> None:
        self.interval = interval
        self._stop: threading.Event | None = None

    def after_worker_boot(self, broker: Broker, worker: Any) -> None:
        self._stop = start_relay_thread(self.interval)

    def before_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        if self._stop is not None:
            self._stop.set()

    def after_consumer_thread_boot(self, broker: Broker, thread: Any) -> None:
        """Take delayed messages before Dramatiq's consumer puts them on its in-memory delay queue.

        Dramatiq has no hook that can keep a message off that queue (``before_delay_message``
        can only observe), so the consumer thread's ``handle_message`` is wrapped.
        """
        handle = thread.handle_message

        def handle_message(message: MessageProxy) -> None:
            try:
                parked = park_delayed_message(message)
            except Exception:  # never let parking take the consumer down: Dramatiq's path remains
                logger.exception("could not park delayed message %s", message.message_id)
                parked = False
            if parked:
                thread.post_process_message(message)  # acked: the run waits in the database
                return
            handle(message)

        thread.handle_message = handle_message
