"""A hard time limit: restart the worker process when a task outlives its timeout by the grace.

Dramatiq's ``TimeLimit`` raises an exception in the worker thread, which only lands when the
thread next runs Python code: a task blocked in a C call (a socket read with no timeout, a
native library) keeps its thread forever and the worker loses capacity one thread at a time.
When a task is still running ``FUSION_JOBS_HARD_LIMIT_GRACE`` seconds past its execution
timeout, this middleware records the attempt as ``timed_out`` and ends the worker process;
``rundramatiq`` (a supervisor) starts a fresh one. The other messages that process held are
redelivered and recorded as lost attempts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from dramatiq import Broker, Middleware
from dramatiq.broker import MessageProxy

from ..conf import jobs_settings

logger = logging.getLogger("fusion_jobs.worker")

#: Exit code of a worker process ended by the hard limit (the supervisor restarts it).
HARD_LIMIT_EXIT = 75


class HardLimitExceeded(Exception):
    """The task did not stop at its soft time limit and its worker process was restarted."""


class HardTimeLimit(Middleware):
    def __init__(self, check_interval: float = 0.5) -> None:
        self.check_interval = check_interval
        self._running: dict[str, tuple[float, float, MessageProxy]] = {}
        self._lock = threading.Lock()
        self._monitor: threading.Thread | None = None

    def after_worker_boot(self, broker: Broker, worker: Any) -> None:
        self._monitor = threading.Thread(target=self._watch, name="fusion-jobs-hard-limit", daemon=True)
        self._monitor.start()

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        actor = broker.actors.get(message.actor_name)
        limit_ms = message.options.get("time_limit") or (actor.options.get("time_limit") if actor else None)
        if not limit_ms:
            return
        deadline = time.monotonic() + limit_ms / 1000 + float(jobs_settings.HARD_LIMIT_GRACE)
        with self._lock:
            self._running[message.message_id] = (deadline, limit_ms / 1000, message)

    def _forget(self, broker: Broker, message: MessageProxy, **kwargs: Any) -> None:
        with self._lock:
            self._running.pop(message.message_id, None)

    after_process_message = _forget
    after_skip_message = _forget

    def _watch(self) -> None:
        while True:
            time.sleep(self.check_interval)
            now = time.monotonic()
            with self._lock:
                overdue = [
                    (mid, limit, msg)
                    for mid, (deadline, limit, msg) in self._running.items()
                    if now > deadline
                ]
            if overdue:
                self._restart(overdue)

    def _restart(self, overdue: list[tuple[str, float, MessageProxy]]) -> None:
        from .lifecycle import record_hard_timeout

        for message_id, limit, message in overdue:
            logger.error(
                "run %s is still running %.0f s past its %.0f s execution timeout (blocked in a call that "
                "cannot be interrupted); restarting this worker process",
                message_id,
                float(jobs_settings.HARD_LIMIT_GRACE),
                limit,
            )
            # Its redelivery finds the run finished and is skipped.
            record_hard_timeout(message, limit)
        logging.shutdown()
        os._exit(HARD_LIMIT_EXIT)
