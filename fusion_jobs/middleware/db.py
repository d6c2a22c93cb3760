"""Close stale database connections around every message: the bug every Django job library has had."""

from __future__ import annotations

import logging
from typing import Any, NoReturn

from django.db import close_old_connections, connections
from dramatiq import Broker
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware, SkipMessage

from ..recording.writer import writer

logger = logging.getLogger("fusion_jobs.worker")

#: Delay before a message that could not be checked or recorded (database down) is tried again.
DB_DOWN_REQUEUE_MS = 5_000


def requeue_for_db_outage(broker: Broker, message: MessageProxy, exc: BaseException, doing: str) -> NoReturn:
    """Don't run what can't be checked or recorded, and don't lose it: put it back for later.

    The delayed copy keeps the message id, so the run is the same one; if even that publish
    fails, the message is dead-lettered rather than acked away.
    """
    logger.warning("database unavailable %s run %s; retrying it later: %s", doing, message.message_id, exc)
    try:
        broker.enqueue(message.copy(), delay=DB_DOWN_REQUEUE_MS)
    except Exception:
        logger.exception("could not requeue run %s; dead-lettering it", message.message_id)
        message.fail()
    raise SkipMessage("database unavailable") from None


class DbConnections(Middleware):
    """``close_old_connections()`` before and after each message, ``close_all()`` when a thread ends.

    With ``CONN_HEALTH_CHECKS`` on, a connection broken by a database restart is replaced on the
    next message instead of failing it (the "connection already closed" storm).
    """

    def _close_old(self, *args: Any, **kwargs: Any) -> None:
        close_old_connections()

    before_process_message = _close_old
    after_process_message = _close_old
    after_skip_message = _close_old

    def _close_all(self, *args: Any, **kwargs: Any) -> None:
        connections.close_all()

    before_worker_thread_shutdown = _close_all
    before_consumer_thread_shutdown = _close_all
    before_worker_shutdown = _close_all

    def after_worker_shutdown(self, *args: Any, **kwargs: Any) -> None:
        writer.stop()  # the worker threads are done: nothing more to record
