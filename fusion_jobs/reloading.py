"""What makes ``rundramatiq`` and ``runcrons`` replace their processes: new migrations, changed code.

A worker snapshots the schema (and the code) when it starts: after ``migrate`` it would keep
running against the old shape until someone restarted it. Each watch here answers "should the
processes be replaced now?" with the one line to log, or None; the supervisor
(:func:`fusion_jobs.worker.supervise`) and the cron runner poll them and replace their processes
gracefully (running tasks finish, new ones start on fresh code).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

from django.utils import autoreload

from .conf import jobs_settings
from .workers import migration_mark


class Watch(Protocol):
    def changed(self) -> str | None: ...


#: Seconds between two looks at ``django_migrations`` (one index-only aggregate).
MIGRATION_POLL_SECONDS = 1.0


class MigrationWatch:
    """Notices migrations applied (or unapplied) after start: ``django_migrations`` changed.

    Polls one aggregate every :data:`MIGRATION_POLL_SECONDS`. A ``migrate`` applies its
    migrations one by one, so the change is reported once the table has stayed the same for one
    more poll: one replacement per ``migrate``, on the final schema.
    """

    def __init__(self, interval: float | None = None) -> None:
        self.interval = interval or MIGRATION_POLL_SECONDS
        self.baseline = migration_mark()
        self._last = self.baseline
        self._next = time.monotonic() + self.interval

    def changed(self) -> str | None:
        now = time.monotonic()
        if now < self._next:
            return None
        self._next = now + self.interval
        mark = migration_mark()
        if mark is None:
            return None  # database unreachable: ask again next time
        if self.baseline is None:
            self.baseline = self._last = mark
            return None
        settled, self._last = mark == self._last, mark
        if mark == self.baseline or not settled:
            return None
        before, self.baseline = self.baseline, mark
        return (
            f"migrations changed since start ({before[0]} applied -> {mark[0]}): "
            "replacing the processes gracefully (running tasks finish; new ones use the new schema)"
        )


class CodeWatch:
    """Notices a change to any loaded Python module's file (``--reload``, as ``runserver``)."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._reloader = autoreload.StatReloader()
        self._snapshot = self._take()
        self._next = time.monotonic() + interval

    def _take(self) -> dict[Path, float]:
        return dict(self._reloader.snapshot_files())

    def changed(self) -> str | None:
        now = time.monotonic()
        if now < self._next:
            return None
        self._next = now + self.interval
        snapshot = self._take()
        moved = sorted(str(f) for f, m in snapshot.items() if self._snapshot.get(f, m) != m)
        self._snapshot = snapshot
        if not moved:
            return None
        more = f" and {len(moved) - 1} more" if len(moved) > 1 else ""
        return f"{moved[0]}{more} changed: reloading the processes"


def migration_watch() -> MigrationWatch | None:
    """The migration watch, or None when ``FUSION_JOBS_RELOAD_ON_MIGRATE`` is off."""
    return MigrationWatch() if jobs_settings.RELOAD_ON_MIGRATE else None
