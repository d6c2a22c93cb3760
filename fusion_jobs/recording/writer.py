"""One writer thread per worker process: run transitions from all worker threads, group-committed.

A worker thread hands its start or end transition to the writer and waits for it; the writer
takes everything queued at that moment (under load, waiting up to ``LINGER`` for the other
threads' ops) and applies it with ``batch.apply_batch``: on PostgreSQL one statement and one
commit for the whole batch. Under load that is one commit for many messages instead of two
commits per message; at low load a batch holds one op and costs what a direct write would. An
end is committed before the worker thread returns, so Dramatiq still acks only after the outcome
is durable.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterator

from django.db import OperationalError, close_old_connections, connections

from .. import metrics
from .batch import apply_batch
from .transitions import Op

logger = logging.getLogger("fusion_jobs.writer")

MAX_BATCH = 256
#: Seconds between two connection checks (``close_old_connections``: CONN_MAX_AGE, and with
#: CONN_HEALTH_CHECKS a ``SELECT 1`` round trip) while batches succeed; after a failed batch the
#: next one always checks, and each op retried alone checks first.
CONNECTION_CHECK_INTERVAL = 1.0
#: Under load (the previous batch held several ops and ended less than BUSY_WINDOW ago), wait up
#: to LINGER seconds for the other threads' transitions before writing, so one statement and one
#: commit serve more of them. Never at low load: a lone op is written at once.
LINGER = 0.001
BUSY_WINDOW = 0.005
#: Longest a worker thread waits for the writer to apply its transition. A writer stuck (a
#: database call that never returns) must not hold every worker thread and the hard-limit
#: watchdog with it: past this the caller gets :class:`WriterStalled`, handled as a database outage.
HANDOVER_TIMEOUT = 30.0


class WriterStalled(OperationalError):
    """The writer thread did not apply a transition in time; callers treat it as a database outage."""


class _Pending:
    """One submitted op; ``done`` is a lock held until the writer has applied it.

    A bare lock, released once by the writer, instead of an ``Event``: two C calls per op
    rather than a Condition's notify machinery, which showed up in profiles of the writer.
    """

    __slots__ = ("abandoned", "done", "error", "op")

    def __init__(self, op: Op) -> None:
        self.op = op
        self.error: BaseException | None = None
        self.abandoned = False
        self.done = threading.Lock()
        self.done.acquire()


class BatchWriter:
    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._submitters: set[int] = set()

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._queue = queue.SimpleQueue()
                self._submitters = set()
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._loop, args=(self._queue,), name="fusion-jobs-writer", daemon=True
                )
                self._thread.start()

    def apply(self, op: Op) -> Op:
        """Apply ``op`` in the next batch and wait for it; raises what the batch raised."""
        self._ensure_thread()
        self._submitters.add(threading.get_ident())
        pending = _Pending(op)
        self._queue.put(pending)
        if not pending.done.acquire(timeout=HANDOVER_TIMEOUT):
            pending.abandoned = True  # not applied if the writer has not taken it yet
            self._replace_stalled_thread()
            raise WriterStalled(
                f"the run-recording writer did not answer in {HANDOVER_TIMEOUT:.0f} s (database stalled?)"
            )
        if pending.error is not None:
            raise pending.error
        return op

    def _replace_stalled_thread(self) -> None:
        """Give the next transitions a fresh writer thread (and database connection).

        The stalled thread keeps its own queue: if its call ever returns it finishes that batch,
        fails what was still queued behind it (each submitter has given up or will), and ends.
        """
        with self._lock:
            thread = self._thread
            if thread is None or not thread.is_alive() or self._pid != os.getpid():
                return
            logger.error(
                "the run-recording writer has not answered for %.0f s; starting a new one", HANDOVER_TIMEOUT
            )
            self._thread = None

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, close the writer thread's database connection and end the thread.

        Called once the worker process's threads are done (a later ``apply`` starts a new one).
        """
        thread = self._thread
        if thread is None or self._pid != os.getpid() or not thread.is_alive():
            return
        self._queue.put(None)
        thread.join(timeout)

    def _collect(
        self, source: queue.SimpleQueue[_Pending | None], last_batch_end: float, last_batch_size: int
    ) -> tuple[list[_Pending], bool]:
        """The next batch, and whether ``stop()`` was asked for."""
        items = [source.get()]
        while len(items) < MAX_BATCH:
            try:
                items.append(source.get_nowait())
            except queue.Empty:
                break
        if None not in items and last_batch_size > 1 and time.monotonic() - last_batch_end < BUSY_WINDOW:
            # Each submitting thread has at most one op pending: stop waiting once all have one.
            deadline = time.monotonic() + LINGER
            while len(items) < min(MAX_BATCH, len(self._submitters)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    items.append(source.get(timeout=remaining))
                except queue.Empty:
                    break
        return [p for p in items if p is not None and not p.abandoned], None in items

    def _loop(self, source: queue.SimpleQueue[_Pending | None]) -> None:
        checked = 0.0
        last_batch_end, last_batch_size = 0.0, 0
        stopping = False
        while not stopping:
            if self._thread is not threading.current_thread() and self._pid == os.getpid():
                self._fail_queued(source)  # replaced after a stall: a newer thread writes now
                return
            batch, stopping = self._collect(source, last_batch_end, last_batch_size)
            if not batch:
                continue
            try:
                if time.monotonic() - checked >= CONNECTION_CHECK_INTERVAL:
                    close_old_connections()
                    checked = time.monotonic()
                apply_batch([p.op for p in batch])
            except BaseException as exc:
                checked = 0.0
                # Keep the batch's errors apart: one bad op must not fail the others.
                logger.warning("batch of %d transitions failed (%s); applying one by one", len(batch), exc)
                for pending in batch:
                    try:
                        close_old_connections()
                        apply_batch([pending.op])
                    except BaseException as single:
                        pending.error = single
            finally:
                last_batch_end, last_batch_size = time.monotonic(), len(batch)
                metrics.writer_batch(len(batch))
                for pending in batch:
                    pending.done.release()
        self._drain_after_stop(source)
        connections.close_all()

    def _fail_queued(self, source: queue.SimpleQueue[_Pending | None]) -> None:
        for pending in _left_in(source):
            pending.error = WriterStalled("the run-recording writer was replaced after a stall")
            pending.done.release()
        connections.close_all()

    def _drain_after_stop(self, source: queue.SimpleQueue[_Pending | None]) -> None:
        """Apply anything queued after ``stop()``'s marker, so no submitter is left waiting."""
        for pending in _left_in(source):
            try:
                apply_batch([pending.op])
            except BaseException as exc:
                pending.error = exc
            finally:
                pending.done.release()


def _left_in(source: queue.SimpleQueue[_Pending | None]) -> Iterator[_Pending]:
    """The ops still queued in ``source``, taken without waiting (``stop()`` markers dropped)."""
    while True:
        try:
            pending = source.get_nowait()
        except queue.Empty:
            return
        if pending is not None:
            yield pending


writer = BatchWriter()
