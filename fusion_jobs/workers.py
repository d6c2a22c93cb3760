"""The workers registry: who consumes, what waits, and whether the schema moved under a process.

Each ``rundramatiq`` worker process and each ``runcrons`` runs a :class:`Heartbeat` thread that
upserts its own :class:`~fusion_jobs.models.WorkerHeartbeat` row every
``FUSION_JOBS_WORKER_HEARTBEAT`` seconds. Counters live in memory and travel with the beat, so a
run costs no extra write. Readers (the admin, ``jobsstatus``, the example) classify rows by age:
*live* (seen within three beats), *stale* (missed beats: dead or stalled), *gone* (stopped cleanly,
or silent for longer); rows older than ``FUSION_JOBS_WORKER_FORGET_AFTER`` are deleted by the
beating processes themselves.

:func:`migration_mark` is the cheap "did someone migrate?" probe both long-running commands poll.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, InterfaceError, connections, router
from django.db.models import Count, F, Min, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from . import __version__
from .api import is_jobs_enabled
from .conf import jobs_settings
from .models import JobRun, RunMode, RunStatus, WorkerHeartbeat, WorkerKind

logger = logging.getLogger("fusion_jobs.workers")

#: A process that missed this many beats is stale (dead, or stalled in a way its thread shows).
STALE_AFTER_BEATS = 3
#: A process silent for this many beats is gone (with the default 5 s beat: five minutes).
GONE_AFTER_BEATS = 60
#: Runs listed per process in its row (the count is exact, the list is a sample).
CURRENT_RUNS_SHOWN = 20
LIVE, STALE, GONE = "live", "stale", "gone"


def heartbeat_interval() -> float:
    return float(jobs_settings.WORKER_HEARTBEAT)


def worker_state(row: WorkerHeartbeat, now: datetime, interval: float | None = None) -> str:
    """``live``, ``stale`` or ``gone``, from the row's last beat and whether it stopped cleanly."""
    interval = interval or heartbeat_interval()
    if row.stopped_at is not None:
        return GONE
    age = (now - row.last_seen_at).total_seconds()
    if age <= STALE_AFTER_BEATS * interval:
        return LIVE
    if age <= GONE_AFTER_BEATS * interval:
        return STALE
    return GONE


def _alias() -> str:
    return router.db_for_write(WorkerHeartbeat) or "default"


class Heartbeat:
    """This process's registry row: counters in memory, one upsert per beat from a daemon thread."""

    def __init__(
        self,
        kind: str,
        *,
        queues: Iterable[str] = (),
        processes: int = 1,
        threads: int = 0,
        supervisor_pid: int | None = None,
        info: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.kind = kind
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.key = f"{kind}:{self.host}:{self.pid}"[:200]
        self.queues = sorted(set(queues))
        self.processes, self.threads = processes, threads
        self.supervisor_pid = supervisor_pid
        self.started_at = timezone.now()
        self.info = info
        self.draining = False
        self._lock = threading.Lock()
        # One entry per delivery, not per run id: a skipped duplicate copy must not hide the running one.
        self._current: dict[object, tuple[str, str]] = {}
        self.done = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False

    # -- counters (called from the worker threads) ---------------------------------------------

    def run_started(self, run_id: str, task: str, *, delivery: object = None) -> None:
        with self._lock:
            self._current[run_id if delivery is None else delivery] = (run_id, task)

    def run_ended(self, run_id: str, *, failed: bool | None, delivery: object = None) -> None:
        """``failed`` None: the run was skipped, neither done nor failed."""
        with self._lock:
            self._current.pop(run_id if delivery is None else delivery, None)
            if failed is True:
                self.failed += 1
            elif failed is False:
                self.done += 1

    # -- the row -------------------------------------------------------------------------------

    def row(self, *, stopped: bool = False) -> WorkerHeartbeat:
        with self._lock:
            current = [{"id": r, "task": t} for r, t in list(self._current.values())[:CURRENT_RUNS_SHOWN]]
            running, done, failed = len(self._current), self.done, self.failed
        info: dict[str, Any] = {"running": running}
        if self.draining:
            info["draining"] = True
        if self.info is not None:
            try:
                info.update(self.info())
            except Exception:  # extra detail only: never stops the beat
                logger.debug("heartbeat info failed", exc_info=True)
        now = timezone.now()
        return WorkerHeartbeat(
            id=self.key,
            kind=self.kind,
            host=self.host[:200],
            pid=self.pid,
            supervisor_pid=self.supervisor_pid,
            version=__version__,
            queues=self.queues,
            processes=self.processes,
            threads=self.threads,
            started_at=self.started_at,
            last_seen_at=now,
            stopped_at=now if stopped else None,
            runs_done=done,
            runs_failed=failed,
            current_runs=current,
            info=info,
        )

    def beat(self, *, stopped: bool = False) -> bool:
        """Upsert the row once (one ``INSERT ... ON CONFLICT DO UPDATE``); False if the database failed."""
        fields = [f.name for f in WorkerHeartbeat._meta.concrete_fields if not f.primary_key]
        try:
            WorkerHeartbeat.objects.using(_alias()).bulk_create(
                [self.row(stopped=stopped)], update_conflicts=True, unique_fields=["id"], update_fields=fields
            )
        except (DatabaseError, InterfaceError) as exc:
            if not self._warned:
                logger.warning("worker heartbeat not written (%s); retrying", str(exc).strip()[:200])
                self._warned = True
            connections[_alias()].close()
            return False
        self._warned = False
        return True

    def forget_old(self) -> int:
        """Delete rows not seen for ``FUSION_JOBS_WORKER_FORGET_AFTER`` seconds (any process's)."""
        cutoff = timezone.now() - timedelta(seconds=float(jobs_settings.WORKER_FORGET_AFTER))
        try:
            deleted, _ = WorkerHeartbeat.objects.using(_alias()).filter(last_seen_at__lt=cutoff).delete()
        except (DatabaseError, InterfaceError):
            connections[_alias()].close()
            return 0
        return deleted

    def start(self) -> Heartbeat:
        """Write the first beat now (the process is listed at once), then beat from a daemon thread."""
        self.beat()
        self._thread = threading.Thread(target=self._loop, name="fusion-jobs-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        beats = 0
        try:
            while not self._stop.wait(heartbeat_interval()):
                self.beat()
                beats += 1
                if beats % 60 == 1:
                    self.forget_old()
        finally:
            connections[_alias()].close()

    def stop(self) -> None:
        """Stop beating and mark the row stopped (gone at once, not stale for minutes)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.beat(stopped=True)
        connections[_alias()].close()


# --- Reading the registry ----------------------------------------------------------------------


@dataclass
class WorkerView:
    row: WorkerHeartbeat
    state: str

    def as_dict(self) -> dict[str, Any]:
        r = self.row
        return {
            "id": r.id,
            "kind": r.kind,
            "state": self.state,
            "host": r.host,
            "pid": r.pid,
            "supervisor_pid": r.supervisor_pid,
            "version": r.version,
            "queues": list(r.queues or []),
            "processes": r.processes,
            "threads": r.threads,
            "started_at": r.started_at.isoformat(),
            "last_seen_at": r.last_seen_at.isoformat(),
            "stopped_at": r.stopped_at.isoformat() if r.stopped_at else None,
            "runs_done": r.runs_done,
            "runs_failed": r.runs_failed,
            "running": int((r.info or {}).get("running", len(r.current_runs or []))),
            "current_runs": list(r.current_runs or []),
            # A stopped or silent process drains nothing: its last beat's flag is history.
            "draining": bool((r.info or {}).get("draining")) and self.state == LIVE,
        }


def list_workers(now: datetime | None = None) -> list[WorkerView]:
    """Every registered process with its state, live ones first."""
    now = now or timezone.now()
    interval = heartbeat_interval()
    order = {LIVE: 0, STALE: 1, GONE: 2}
    views = [WorkerView(row, worker_state(row, now, interval)) for row in WorkerHeartbeat.objects.all()]
    return sorted(views, key=lambda v: (order[v.state], v.row.kind, v.row.host, v.row.pid))


@dataclass
class QueueView:
    """One queue: runs waiting in the database, the oldest wait, and who consumes it."""

    name: str
    waiting: int
    oldest: datetime | None
    live_workers: int
    last_seen: datetime | None
    broker_messages: int | None = None

    @property
    def unconsumed(self) -> bool:
        return self.waiting > 0 and self.live_workers == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "waiting": self.waiting,
            "oldest_waiting_since": self.oldest.isoformat() if self.oldest else None,
            "live_workers": self.live_workers,
            "last_worker_seen_at": self.last_seen.isoformat() if self.last_seen else None,
            "broker_messages": self.broker_messages,
            "unconsumed": self.unconsumed,
        }


def waiting_runs(now: datetime) -> dict[str, tuple[int, datetime]]:
    """Per queue: runs a worker should be executing now but none has started, and since when.

    Queued runs, and retries whose backoff has passed; not runs deferred to a later time.
    """
    since = Coalesce(F("next_attempt_at"), F("enqueued_at"))
    rows = (
        JobRun.objects.filter(mode=RunMode.WORKER, status__in=[RunStatus.QUEUED, RunStatus.RETRYING])
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .exclude(status=RunStatus.RETRYING, next_attempt_at__isnull=True)
        .order_by()
        .values("queue")
        .annotate(n=Count("pk"), oldest=Min(since))
    )
    return {row["queue"]: (row["n"], row["oldest"]) for row in rows}


def queue_views(
    now: datetime | None = None, workers: list[WorkerView] | None = None, also: Iterable[str] = ()
) -> list[QueueView]:
    """Every queue some run waits on, some registered worker consumes, or named in ``also``."""
    now = now or timezone.now()
    workers = list_workers(now) if workers is None else workers
    waiting = waiting_runs(now)
    names = set(waiting) | set(also)
    for view in workers:
        if view.row.kind == WorkerKind.WORKER and view.state != GONE:
            names.update(view.row.queues or [])
    result = []
    for name in sorted(names):
        consumers = [v for v in workers if v.row.kind == WorkerKind.WORKER and name in (v.row.queues or [])]
        live = sum(1 for v in consumers if v.state == LIVE)
        last_seen = max((v.row.last_seen_at for v in consumers), default=None)
        count, oldest = waiting.get(name, (0, None))
        result.append(QueueView(name, count, oldest, live, last_seen))
    return result


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 90 * 60:
        return f"{seconds // 60} min"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def unconsumed_warnings(
    now: datetime | None = None, queues: list[QueueView] | None = None, *, min_wait: float | None = None
) -> list[str]:
    """One sentence per queue where runs wait and no live worker consumes it (empty when jobs run inline).

    "3 runs queued on `default` for 4 min; no worker consuming it has been seen since 14:02 UTC".
    Runs that waited less than ``min_wait`` seconds (default: one heartbeat, as a worker that just
    started may not have beaten yet) are not reported.
    """
    if not is_jobs_enabled():
        return []
    now = now or timezone.now()
    queues = queue_views(now) if queues is None else queues
    lines = []
    for q in queues:
        if not q.unconsumed or q.oldest is None:
            continue
        waited = (now - q.oldest).total_seconds()
        if waited < (heartbeat_interval() if min_wait is None else min_wait):
            continue
        if q.last_seen is None:
            seen = "no worker consuming it has ever registered: start one with manage.py rundramatiq"
        else:
            stamp = timezone.localtime(q.last_seen).strftime("%Y-%m-%d %H:%M:%S %Z")
            seen = f"no worker consuming it has been seen since {stamp} ({_ago((now - q.last_seen).total_seconds())} ago)"
        lines.append(
            f"{q.waiting} run{'s' if q.waiting != 1 else ''} queued on `{q.name}` for {_ago(waited)}; {seen}."
        )
    return lines


# --- Schema changes ------------------------------------------------------------------------------


def migration_mark() -> tuple[int, int] | None:
    """``(count, max id)`` of ``django_migrations``: changes whenever a migration is applied or unapplied.

    One index-only aggregate, cheap enough to poll every few seconds. None when the database can't
    be asked (the caller tries again at the next poll).
    """
    connection = connections[_alias()]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM django_migrations")
            row = cursor.fetchone()
    except (DatabaseError, InterfaceError):
        connection.close()
        return None
    return (int(row[0]), int(row[1])) if row else None
