"""A clock the test moves and a publisher that records (shared by the scheduler tests)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from fusion_jobs.exceptions import PublishError


class FakeClock:
    """A ``now()`` callable the test sets and advances: outages and DST without sleeping."""

    def __init__(self, start: datetime) -> None:
        self.now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def set(self, moment: datetime) -> None:
        with self._lock:
            self.now = moment.astimezone(UTC)

    def advance(self, **delta: float) -> datetime:
        with self._lock:
            self.now += timedelta(**delta)
            return self.now


class Recorder:
    """A publish function that keeps what it was given (or fails while ``down``)."""

    def __init__(self) -> None:
        self.published: list[str] = []
        self.down = False
        self._lock = threading.Lock()

    def __call__(self, task_obj: Any, run_id: str, payload: dict[str, Any]) -> None:
        if self.down:
            raise PublishError("broker down (test)")
        with self._lock:
            self.published.append(run_id)
