"""Close stale database connections around every message: the bug every Django job library has had."""

from __future__ import annotations

from typing import Any

from django.db import close_old_connections, connections
from dramatiq.middleware import Middleware


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
