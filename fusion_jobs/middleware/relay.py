"""Runs the outbox relay inside each worker process, so ``rundramatiq`` alone republishes lost runs."""

from __future__ import annotations

import threading
from typing import Any

from dramatiq import Broker, Middleware


class OutboxRelay(Middleware):
    def __init__(self, interval: float = 5.0) -> None:
        self.interval = interval
        self._stop: threading.Event | None = None

    def after_worker_boot(self, broker: Broker, worker: Any) -> None:
        from ..relay import start_relay_thread

        self._stop = start_relay_thread(self.interval)

    def before_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        if self._stop is not None:
            self._stop.set()
