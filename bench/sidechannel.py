"""The completion side channel of ``bench/compare.py``: each task body appends ``time.time()`` to a file.

One ``os.write`` of a fixed-width 18-byte line to ``$FJ_BENCH_TS_DIR/<phase>.ts``, opened with
``O_APPEND`` (atomic for a small write, so threads and processes can share the file). It costs a
couple of microseconds, needs no service, and the harness counts completions from the file size
and reads exact body start times afterwards. No Django, no broker: imported by every peer.
"""

from __future__ import annotations

import os
import threading
import time

LINE = 18  # "%17.6f\n"
_fds: dict[tuple[int, str], int] = {}
_lock = threading.Lock()


def _fd(phase: str) -> int:
    key = (os.getpid(), phase)
    fd = _fds.get(key)
    if fd is None:
        with _lock:
            fd = _fds.get(key)
            if fd is None:
                directory = os.environ["FJ_BENCH_TS_DIR"]
                fd = os.open(
                    os.path.join(directory, f"{phase}.ts"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644
                )
                _fds[key] = fd
    return fd


def mark(phase: str) -> None:
    """Record that a task body started now (called first thing in every benchmark task)."""
    os.write(_fd(phase), b"%17.6f\n" % time.time())


def count(directory: str, phase: str) -> int:
    try:
        return os.stat(os.path.join(directory, f"{phase}.ts")).st_size // LINE
    except FileNotFoundError:
        return 0


def read(directory: str, phase: str) -> list[float]:
    try:
        with open(os.path.join(directory, f"{phase}.ts"), "rb") as handle:
            return [float(line) for line in handle.read().split(b"\n") if line.strip()]
    except FileNotFoundError:
        return []
