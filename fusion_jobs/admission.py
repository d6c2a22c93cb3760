"""Admission of a run about to start: single-flight locks and stale cron ticks.

Shared by the worker (:mod:`fusion_jobs.middleware.single_flight`) and the inline backend, and
free of Dramatiq and APScheduler imports so the inline path stays light.

* **Single-flight** (``@task(single_flight=True)``, or a function of the task's arguments that
  returns a key): at most one run per key executes at a time, across all workers and processes.
  On PostgreSQL it is ``pg_try_advisory_xact_lock`` on a 64-bit hash of the key, taken in a
  transaction left open on a dedicated connection for the run, so neither the task closing its
  own connection (``close_old_connections`` in a long loop) nor Django recycling it can drop the
  lock early, and a dead worker's lock goes with its connection. A transaction-scoped lock, not
  a session lock: a transaction-pooling proxy (PgBouncer ``pool_mode=transaction``) keeps one
  server connection for a whole transaction, but hands a session's server connection to other
  clients between transactions, where a session lock would leak and be re-entered by them.
  Elsewhere (SQLite in development) it is a lock row in ``WorkerLease`` that expires after the
  task's timeout plus the stuck grace.
* **Stale ticks**: a cron run a worker picks up long after its tick, when a newer tick is due
  or past, is skipped: later than the schedule's ``max_lateness`` when it has one, else, for a
  single-flight task, later than the schedule's interval (the next tick).

A run kept from starting is recorded ``skipped`` with the reason, and never goes ``running``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from .conf import jobs_settings
from .models import CronSchedule, JobRun, RunStatus, WorkerLease
from .recording import db_alias, mark_skipped
from .registry import Task
from .scheduler.crontab import ZonedCron

logger = logging.getLogger("fusion_jobs.admission")

#: How long the set of tasks that may have stale ticks is cached per process.
CANDIDATES_TTL = 30.0
LOCK_PREFIX = "fusion_jobs:single_flight:"


class Admission:
    """The answer for one run: go ahead (maybe holding a lock to release after), or skip."""

    __slots__ = ("_release", "key", "skip_reason")

    def __init__(
        self, skip_reason: str = "", release: Callable[[], None] | None = None, key: str = ""
    ) -> None:
        self.skip_reason = skip_reason
        self.key = key
        self._release = release

    @property
    def holds_lock(self) -> bool:
        return self._release is not None

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            try:
                release()
            except Exception:
                # The lock dies with its connection anyway; never fail a finished run over it.
                logger.warning("could not release single-flight lock %r", self.key, exc_info=True)


# --- Single-flight -----------------------------------------------------------------------------


def flight_key(task_obj: Task, kwargs: dict[str, Any]) -> str:
    """The lock key: the task's name, plus what its key function returns for these arguments."""
    key_fn = task_obj.single_flight
    if callable(key_fn):
        try:
            return f"{task_obj.name}:{key_fn(**kwargs)}"
        except Exception:
            logger.exception("single-flight key function of %s failed; locking the whole task", task_obj.name)
    return task_obj.name


def lock_id(key: str) -> int:
    """A signed 64-bit advisory lock id for ``key``."""
    digest = hashlib.blake2b((LOCK_PREFIX + key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def pg_lock(alias: str, key: str) -> Callable[[], None] | None:
    """The lock in a transaction kept open (idle, no snapshot held) until ``release`` rolls it back."""
    connection = connections.create_connection(alias)
    number = lock_id(key)
    try:
        connection.set_autocommit(False)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [number])
            (locked,) = cursor.fetchone()
    except Exception:
        connection.close()
        raise
    if not locked:
        connection.close()
        return None

    def release() -> None:
        try:
            connection.rollback()
        finally:
            connection.close()

    return release


def row_lock(alias: str, key: str, holder: str, ttl: float) -> Callable[[], None] | None:
    name = "sf:" + hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
    expires = timezone.now() + timedelta(seconds=ttl)
    rows = WorkerLease.objects.using(alias)
    taken = rows.filter(name=name, expires_at__lt=timezone.now()).update(holder=holder, expires_at=expires)
    if not taken:
        try:
            with transaction.atomic(using=alias):
                rows.create(name=name, holder=holder, expires_at=expires)
        except IntegrityError:
            return None

    def release() -> None:
        WorkerLease.objects.using(alias).filter(name=name, holder=holder).delete()

    return release


def acquire(task_obj: Task, key: str, holder: str) -> Callable[[], None] | None:
    """Take the single-flight lock for ``key``; its release function, or None if someone holds it."""
    alias = db_alias()
    if connections[alias].vendor == "postgresql":
        return pg_lock(alias, key)
    ttl = task_obj.effective_timeout + float(jobs_settings.STUCK_GRACE_SECONDS)
    return row_lock(alias, key, holder, ttl)


# --- Stale cron ticks --------------------------------------------------------------------------

_candidates: tuple[float, frozenset[str]] = (0.0, frozenset())
_candidates_lock = threading.Lock()


def _tasks_with_lateness() -> frozenset[str]:
    """Tasks some schedule gives a ``max_lateness`` (cached): only their runs need a stale check."""
    global _candidates
    with _candidates_lock:
        loaded_at, names = _candidates
        if time.monotonic() - loaded_at < CANDIDATES_TTL:
            return names
    names = frozenset(
        CronSchedule.objects.using(db_alias())
        .filter(max_lateness__isnull=False)
        .values_list("task_name", flat=True)
        .distinct()
    )
    with _candidates_lock:
        _candidates = (time.monotonic(), names)
    return names


def forget_cached_schedules() -> None:
    """Drop the cached set of tasks with a ``max_lateness`` (tests that change schedules)."""
    global _candidates
    with _candidates_lock:
        _candidates = (0.0, frozenset())


def stale_reason(task_obj: Task, run_id: str, now: datetime | None = None) -> str:
    """Why this cron run is too late to start, or "" (not a cron run, or still in time)."""
    if not task_obj.single_flight and task_obj.name not in _tasks_with_lateness():
        return ""
    alias = db_alias()
    run = JobRun.objects.using(alias).filter(pk=run_id).values("cron_id", "scheduled_for").first()
    if not run or run["cron_id"] is None or run["scheduled_for"] is None:
        return ""
    schedule = (
        CronSchedule.objects.using(alias)
        .filter(pk=run["cron_id"])
        .values("expression", "timezone", "max_lateness")
        .first()
    )
    if schedule is None:
        return ""
    tick: datetime = run["scheduled_for"]
    lateness = ((now or timezone.now()) - tick).total_seconds()
    if schedule["max_lateness"] is not None:
        limit, what = float(schedule["max_lateness"]), "the schedule's max_lateness"
    elif task_obj.single_flight:
        following = ZonedCron(schedule["expression"], schedule["timezone"]).next_after(tick)
        if following is None:
            return ""
        limit, what = (following - tick).total_seconds(), "its schedule's interval (a newer tick is due)"
    else:
        return ""
    if lateness <= limit:
        return ""
    return f"stale cron tick: starting {lateness:.0f} s after its {tick:%Y-%m-%d %H:%M} UTC tick, over {what} ({limit:.0f} s)"


# --- The check before a run --------------------------------------------------------------------


def _skip(run_id: str, reason: str) -> None:
    """Record the skip on a run that has not started; a running one (a duplicate delivery) is left alone."""
    status = JobRun.objects.using(db_alias()).filter(pk=run_id).values_list("status", flat=True).first()
    if status in (RunStatus.QUEUED, RunStatus.RETRYING):
        mark_skipped(run_id, reason)


def admit(task_obj: Task, run_id: str, kwargs: dict[str, Any], *, now: datetime | None = None) -> Admission:
    """Decide whether run ``run_id`` may start; take its single-flight lock if it has one.

    The caller must call ``release()`` on the answer once the run is over. A skip is recorded
    on the run (``skipped`` with the reason) before this returns.
    """
    reason = stale_reason(task_obj, run_id, now)
    if reason:
        _skip(run_id, reason)
        return Admission(skip_reason=reason)
    if not task_obj.single_flight:
        return Admission()
    key = flight_key(task_obj, kwargs)
    release = acquire(task_obj, key, holder=run_id)
    if release is None:
        reason = f"single-flight: another run of {key!r} is still running"[:200]
        _skip(run_id, reason)
        return Admission(skip_reason=reason, key=key)
    return Admission(release=release, key=key)
