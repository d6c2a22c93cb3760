"""Runs marked published in batches, by a thread, instead of one statement per publish.

The published mark only tells the outbox relay to leave a run alone, and a worker's start sets
it too, so it may come a moment late: the relay takes a run only once it is older than its
minimum age, seconds. :func:`mark_later` hands run ids to this process's marking thread, which
marks what has gathered with one statement per :data:`MARK_INTERVAL`
(:func:`fusion_jobs.recording.mark_published_late`). That takes a statement and a round trip off
every ``enqueue()``. Ids not yet marked when the process dies are published again by the relay,
and the worker runs each attempt once whatever number of copies arrive.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable

from django.db import close_old_connections, connections

from .recording import mark_published_late

logger = logging.getLogger("fusion_jobs")

#: Seconds run ids gather before one statement marks them.
MARK_INTERVAL = 0.2
#: Marked at once, without waiting for the interval, when this many are waiting.
MARK_BATCH = 2000
#: Seconds a process at exit waits for its last marks.
EXIT_WAIT = 5.0
#: Seconds without runs to mark after which the thread closes its database connection.
IDLE_CLOSE = 1.0


def _release(close: Callable[[], None]) -> None:
    """Close this thread's connections; a failure (the database is down) must not end the thread,
    or no run of this process would be marked again: the next batch reconnects."""
    try:
        close()
    except Exception:
        logger.debug("the marking thread could not close its database connection", exc_info=True)


class Marker:
    """A thread that calls ``mark`` with what gathered, at most once per ``interval``."""

    def __init__(self, mark: Callable[[list[str]], None], interval: float = MARK_INTERVAL) -> None:
        self._mark = mark
        self._interval = interval
        self._ids: list[str] = []
        self._writing = False
        self._hurry = 0
        self._stopping = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="fusion-jobs-marker", daemon=True)
        self._thread.start()

    def add(self, run_ids: list[str]) -> None:
        with self._cond:
            idle = not self._ids
            self._ids.extend(run_ids)
            if idle or len(self._ids) >= MARK_BATCH:  # else the thread is gathering: no wake-up
                self._cond.notify_all()

    def _run(self) -> None:
        try:
            while self._next():
                pass
        finally:
            _release(connections.close_all)  # this thread's: an idle one would hold the database open

    def _next(self) -> bool:
        with self._cond:
            idle = not self._cond.wait_for(lambda: self._ids or self._stopping, IDLE_CLOSE)
        if idle:
            # A connection kept for CONN_MAX_AGE would stay open for ever, as no batch comes to
            # check its age (and Django's test runner could not drop its test database past it).
            # Closed outside the lock: callers adding ids are not held up.
            _release(connections.close_all)
        with self._cond:
            while not self._ids and not self._stopping:
                self._cond.wait()
            if not self._ids:
                return False
            if not (self._stopping or self._hurry) and len(self._ids) < MARK_BATCH:
                self._cond.wait_for(
                    lambda: self._stopping or self._hurry > 0 or len(self._ids) >= MARK_BATCH,
                    self._interval,
                )
            ids, self._ids = self._ids, []
            self._writing = True
        try:
            self._mark(ids)
        except Exception:  # unmarked runs are published again by the relay; the worker dedupes
            logger.warning("%d published run(s) could not be marked so", len(ids), exc_info=True)
        finally:
            _release(close_old_connections)  # this thread's connection lives as CONN_MAX_AGE says
            with self._cond:
                self._writing = False
                self._cond.notify_all()
        return True

    def flush(self, timeout: float) -> bool:
        """Mark what is waiting now; False when that took longer than ``timeout``."""
        with self._cond:
            self._hurry += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: not self._ids and not self._writing, timeout)
            finally:
                self._hurry -= 1

    def close(self, timeout: float) -> None:
        """Mark what is waiting, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)


_markers: dict[int, Marker] = {}
_lock = threading.Lock()


def mark_later(run_ids: list[str]) -> None:
    """Have this process's marking thread mark these runs published (their messages are sent)."""
    pid = os.getpid()  # a forked child starts its own thread
    marker = _markers.get(pid)
    if marker is None:
        with _lock:
            marker = _markers.get(pid)
            if marker is None:
                marker = _markers[pid] = Marker(mark_published_late)
    marker.add(run_ids)


def flush_marks(timeout: float) -> bool:
    """Mark every run handed to :func:`mark_later` so far; False when ``timeout`` ran out first."""
    marker = _markers.get(os.getpid())
    return marker is None or marker.flush(timeout)


def stop_marking(timeout: float = EXIT_WAIT) -> None:
    """Mark what is waiting and end this process's marking thread (tests; at exit it is automatic)."""
    with _lock:
        marker = _markers.pop(os.getpid(), None)
    if marker is not None:
        marker.close(timeout)


def _forget_the_parents() -> None:
    """In a forked child: the parent's marking thread is not here, and a lock another thread held
    at the fork would stay held for ever; start afresh."""
    global _lock
    _lock = threading.Lock()
    _markers.clear()


os.register_at_fork(after_in_child=_forget_the_parents)


# Registered on import, before any publisher that hands this module run ids registers its own
# exit handler: handlers run last-in first-out, so publishers flush their confirms first.
atexit.register(stop_marking)


__all__ = ["Marker", "flush_marks", "mark_later", "stop_marking"]
