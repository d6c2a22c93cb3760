"""A hard time limit: restart the worker process when a task outlives its timeout by the grace.

Dramatiq's ``TimeLimit`` raises an exception in the worker thread, which only lands when the
thread next runs Python code: a task blocked in a C call (a socket read with no timeout, a
native library) keeps its thread forever and the worker loses capacity one thread at a time.
When a task is still running ``FUSION_JOBS_HARD_LIMIT_GRACE`` seconds past its execution
timeout, this middleware records the attempt as ``timed_out`` and ends the worker process;
``rundramatiq`` (a supervisor) starts a fresh one. The other messages that process held are
redelivered and recorded as lost attempts.

The same goes for a worker thread that dies (an exception Dramatiq's loop does not catch): the
run it held is recorded ``failed`` and the process ends, as a process with fewer threads than it
was started with would otherwise keep consuming with less capacity, or with none.

Running messages are tracked per delivery, not per message id, so a duplicate delivery that is
skipped never stops the watch on the one that runs; the limit is the registered task's, never
an option of the message.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from dramatiq import Broker, Middleware
from dramatiq.broker import MessageProxy
from dramatiq.worker import ConsumerThread, WorkerThread

from ..conf import jobs_settings
from ..exit_codes import HARD_LIMIT_EXIT, THREAD_DIED_EXIT
from .lifecycle import RunLifecycle

logger = logging.getLogger("fusion_jobs.worker")


class HardTimeLimit(Middleware):
    """Watches each running delivery's deadline; ``lifecycle`` records the runs it ends."""

    def __init__(self, lifecycle: RunLifecycle, check_interval: float = 0.5) -> None:
        self.lifecycle = lifecycle
        self.check_interval = check_interval
        self._running: dict[int, tuple[float, float, MessageProxy]] = {}
        self._lock = threading.Lock()
        self._monitor: threading.Thread | None = None

    def before_worker_boot(self, broker: Broker, worker: Any) -> None:
        previous = threading.excepthook

        def on_thread_death(args: Any) -> None:
            if isinstance(args.thread, WorkerThread | ConsumerThread) and args.thread.running:
                self._thread_died(args.thread, args.exc_value)
            previous(args)

        threading.excepthook = on_thread_death

    def after_worker_boot(self, broker: Broker, worker: Any) -> None:
        self._monitor = threading.Thread(target=self._watch, name="fusion-jobs-hard-limit", daemon=True)
        self._monitor.start()

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        actor = broker.actors.get(message.actor_name)
        limit_ms = actor.options.get("time_limit") if actor else None
        if not limit_ms:
            return
        deadline = time.monotonic() + limit_ms / 1000 + float(jobs_settings.HARD_LIMIT_GRACE)
        with self._lock:
            self._running[id(message)] = (deadline, limit_ms / 1000, message)

    def _forget(self, broker: Broker, message: MessageProxy, **kwargs: Any) -> None:
        with self._lock:
            self._running.pop(id(message), None)

    after_process_message = _forget
    after_skip_message = _forget

    def _watch(self) -> None:
        while True:
            time.sleep(self.check_interval)
            now = time.monotonic()
            with self._lock:
                overdue = [(limit, msg) for deadline, limit, msg in self._running.values() if now > deadline]
            if overdue:
                self._restart(overdue)

    def _thread_died(self, thread: threading.Thread, exc: BaseException | None) -> None:
        logger.error(
            "%s died (%s: %s); recording its run and restarting this worker process",
            thread.name,
            type(exc).__name__,
            exc,
        )
        try:
            self.lifecycle.record_thread_death(thread.ident or 0, exc or RuntimeError("unknown"))
        finally:
            logging.shutdown()
            os._exit(THREAD_DIED_EXIT)

    def _restart(self, overdue: list[tuple[float, MessageProxy]]) -> None:
        for limit, message in overdue:
            logger.error(
                "run %s is still running %.0f s past its %.0f s execution timeout (blocked in a call that "
                "cannot be interrupted); restarting this worker process",
                message.message_id,
                float(jobs_settings.HARD_LIMIT_GRACE),
                limit,
            )
            # Its redelivery finds the run finished and is skipped.
            self.lifecycle.record_hard_timeout(message, limit)
        logging.shutdown()
        os._exit(HARD_LIMIT_EXIT)
