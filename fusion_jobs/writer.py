"""One writer thread per worker process: run transitions from all worker threads, group-committed.

A worker thread hands its start or end transition to the writer and waits for it; the writer
takes everything queued at that moment and applies it with ``recording.apply_batch`` in one
transaction. Under load that is one commit for many messages instead of two commits per
message; at low load a batch holds one op and costs what a direct write would. An end is
committed before the worker thread returns, so Dramatiq still acks only after the outcome is
durable.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from dataclasses import dataclass, field

from django.db import close_old_connections

from .recording import Op, apply_batch

logger = logging.getLogger("fusion_jobs.writer")

MAX_BATCH = 256


@dataclass
class _Pending:
    op: Op
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class BatchWriter:
    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._queue = queue.SimpleQueue()
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._loop, name="fusion-jobs-writer", daemon=True)
                self._thread.start()

    def apply(self, op: Op) -> Op:
        """Apply ``op`` in the next batch and wait for it; raises what the batch raised."""
        self._ensure_thread()
        pending = _Pending(op)
        self._queue.put(pending)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return op

    def _loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                close_old_connections()
                apply_batch([p.op for p in batch])
            except BaseException as exc:
                # Keep the batch's errors apart: one bad op must not fail the others.
                logger.warning("batch of %d transitions failed (%s); applying one by one", len(batch), exc)
                for pending in batch:
                    try:
                        close_old_connections()
                        apply_batch([pending.op])
                    except BaseException as single:
                        pending.error = single
            finally:
                for pending in batch:
                    pending.done.set()


writer = BatchWriter()
