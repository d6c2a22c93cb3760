"""An APScheduler 3 job store on the ``CronSchedule`` table: plain columns, no pickle.

APScheduler's ``SQLAlchemyJobStore`` (and django-apscheduler's store) pickle the whole Job, and
delete any job that no longer unpickles after a refactor. Here a job is one schedule row, stored
as the columns a person can read (task, crontab expression, timezone, JSON input, next fire
time), and rebuilt on every read:

* ``func`` is always :func:`fusion_jobs.scheduler.firing.fire`, ``args`` is ``(name,)``;
* ``kwargs`` is ``{"task": ..., "input": {...}}`` (the row's columns, for the record: ``fire``
  re-reads the row so an admin pause or a new deploy is seen);
* ``trigger`` is a :class:`CrontabTrigger` rebuilt from expression and timezone;
* ``next_run_time`` is the row's next fire time, or None while the schedule is paused,
  disabled, or has none (APScheduler's "paused job").

Differences from APScheduler's contract, on purpose:

* **Adding a job that already exists with the same definition changes nothing** (its next fire
  time is kept) instead of raising ``ConflictingIdError``: every ``runcrons`` start declares its
  schedules again. A *different* definition under an existing id still raises.
* **Removing a job marks its row orphaned instead of deleting it**: it stops firing and its run
  history stays linked. ``lookup_job`` no longer sees it; adding it again brings it back.
* Only jobs this store can write as columns are accepted (``fire`` with the schedule name, a
  :class:`CrontabTrigger`, a task name, ``max_instances=1``, ``coalesce=True``,
  ``misfire_grace_time=None``); anything else raises ValueError instead of being pickled or
  silently read back different.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from apscheduler.job import Job
from apscheduler.jobstores.base import BaseJobStore, ConflictingIdError, JobLookupError
from django.db import IntegrityError, connections, transaction
from django.db.models import QuerySet
from django.utils import timezone

from ..exceptions import CronError
from ..models import CronSchedule
from ..recording import db_alias
from .triggers import CrontabTrigger

logger = logging.getLogger("fusion_jobs.crons")

#: The one callable every cron job runs: it fires the schedule named by its argument.
FIRE_REF = "fusion_jobs.scheduler.firing:fire"
DEFINITION = ("task_name", "expression", "timezone", "input")


def refresh_connections() -> None:
    """``close_old_connections()``, except for a connection inside a transaction (tests, callers' atomics).

    With ``CONN_HEALTH_CHECKS`` a connection broken by a database restart is replaced here.
    """
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


def job_state(schedule: CronSchedule) -> dict[str, Any]:
    """The Job's state, built from the row's columns (APScheduler's own ``__setstate__`` format)."""
    active = schedule.enabled and not schedule.paused
    return {
        "version": 1,
        "id": schedule.name,
        "func": FIRE_REF,
        "trigger": CrontabTrigger(schedule.expression, schedule.timezone),
        "executor": "default",
        "args": (schedule.name,),
        "kwargs": {"task": schedule.task_name, "input": schedule.input},
        "name": f"{schedule.name} -> {schedule.task_name}",
        "misfire_grace_time": None,  # lateness is the schedule's misfire policy, applied by fire()
        "coalesce": True,
        "max_instances": 1,
        "next_run_time": schedule.next_fire_at if active else None,
    }


def _columns(job: Job) -> dict[str, Any]:
    """The row's columns for ``job``; ValueError for a job this store cannot keep without pickle."""
    trigger = job.trigger
    kwargs = dict(job.kwargs or {})
    task_name = kwargs.get("task")
    problems = []
    if job.func_ref != FIRE_REF:
        problems.append(f"its callable is {job.func_ref!r}, not {FIRE_REF!r}")
    if tuple(job.args) != (job.id,):
        problems.append(f"its args are {tuple(job.args)!r}, not ({job.id!r},)")
    if not isinstance(trigger, CrontabTrigger):
        problems.append(f"its trigger is {trigger!r}, not a CrontabTrigger")
    if not isinstance(task_name, str) or not task_name:
        problems.append("its kwargs name no 'task'")
    if set(kwargs) - {"task", "input"}:
        problems.append(f"unexpected kwargs {sorted(set(kwargs) - {'task', 'input'})}")
    # Fixed for every cron (job_state): a tick is claimed once, lateness is the misfire policy.
    # Storing another value would silently read back as these.
    for attribute, fixed in (("max_instances", 1), ("coalesce", True), ("misfire_grace_time", None)):
        value = getattr(job, attribute, fixed)
        if value != fixed:
            problems.append(f"its {attribute} is {value!r}, and every cron here has {fixed!r}")
    if problems:
        raise ValueError(
            f"job {job.id!r} cannot be stored as plain columns (no pickle here): {'; '.join(problems)}"
        )
    assert isinstance(trigger, CrontabTrigger)
    next_run = job.next_run_time
    return {
        "task_name": task_name,
        "expression": trigger.expression,
        "timezone": trigger.timezone_name,
        "input": dict(kwargs.get("input") or {}),
        "next_fire_at": next_run.astimezone(UTC) if next_run is not None else None,
    }


class DjangoJobStore(BaseJobStore):
    """Cron jobs as ``CronSchedule`` rows (see the module docstring for the contract)."""

    def __init__(self, using: str | None = None) -> None:
        super().__init__()
        self.using = using
        self._unloadable: dict[str, tuple[str, str]] = {}  # name -> the definition already reported

    # -- helpers ----------------------------------------------------------------------------

    def _rows(self) -> QuerySet[CronSchedule]:
        return CronSchedule.objects.using(self.using or db_alias()).filter(orphaned=False)

    def _job(self, schedule: CronSchedule) -> Job:
        job = Job.__new__(Job)
        job.__setstate__(job_state(schedule))
        job._scheduler = self._scheduler
        job._jobstore_alias = self._alias
        return job

    def _jobs(self, queryset: QuerySet[CronSchedule]) -> list[Job]:
        jobs = []
        for schedule in queryset:
            try:
                jobs.append(self._job(schedule))
            except Exception as exc:
                # A row that no longer makes a job (edited by hand, or stored before the strict parser):
                # skip it, never delete it; said once per definition, not at every poll.
                definition = (schedule.expression, schedule.timezone)
                if self._unloadable.get(schedule.name) != definition:
                    self._unloadable[schedule.name] = definition
                    logger.error(
                        "cron schedule %r cannot be loaded; left as it is, not firing (fix or delete it): %s",
                        schedule.name,
                        exc,
                        exc_info=not isinstance(exc, CronError),
                    )
        return jobs

    # -- BaseJobStore ----------------------------------------------------------------------

    def lookup_job(self, job_id: str) -> Job | None:
        schedule = self._rows().filter(name=job_id).first()
        return self._job(schedule) if schedule is not None else None

    def get_due_jobs(self, now: datetime) -> list[Job]:
        """Active schedules whose next fire time is at or before ``now``, earliest first.

        Stale connections are closed first on every poll, so a PostgreSQL restart costs one
        failed poll, not a dead scheduler.
        """
        refresh_connections()
        due = (
            self._rows()
            .filter(enabled=True, paused=False, next_fire_at__isnull=False, next_fire_at__lte=now)
            .order_by("next_fire_at", "name")
        )
        return self._jobs(due)

    def get_next_run_time(self) -> datetime | None:
        row = (
            self._rows()
            .filter(enabled=True, paused=False, next_fire_at__isnull=False)
            .order_by("next_fire_at")
            .values("next_fire_at")
            .first()
        )
        return row["next_fire_at"] if row else None

    def get_all_jobs(self) -> list[Job]:
        jobs = self._jobs(self._rows().order_by("name"))
        utc_max = datetime.max.replace(tzinfo=UTC)
        jobs.sort(key=lambda job: (job.next_run_time is None, job.next_run_time or utc_max, job.id))
        return jobs

    def add_job(self, job: Job) -> None:
        columns = _columns(job)
        alias = self.using or db_alias()
        with transaction.atomic(using=alias):
            existing = CronSchedule.objects.using(alias).select_for_update().filter(name=job.id).first()
            if existing is None:
                try:
                    with transaction.atomic(using=alias):
                        CronSchedule.objects.using(alias).create(name=job.id, **columns)
                    return
                except IntegrityError:  # added by another process just now
                    existing = CronSchedule.objects.using(alias).select_for_update().get(name=job.id)
            if existing.orphaned:
                for key, value in columns.items():
                    setattr(existing, key, value)
                existing.orphaned = False
                existing.save(update_fields=[*columns, "orphaned", "updated_at"])
                return
            if any(getattr(existing, key) != columns[key] for key in DEFINITION):
                raise ConflictingIdError(job.id)
            # The same job again: nothing to do, and its next fire time is kept.

    def update_job(self, job: Job) -> None:
        columns = _columns(job)
        updated = self._rows().filter(name=job.id).update(**columns, updated_at=timezone.now())
        if not updated:
            raise JobLookupError(job.id)

    def remove_job(self, job_id: str) -> None:
        if not self._rows().filter(name=job_id).update(orphaned=True, updated_at=timezone.now()):
            raise JobLookupError(job_id)

    def remove_all_jobs(self) -> None:
        self._rows().update(orphaned=True, updated_at=timezone.now())

    def shutdown(self) -> None:
        """Nothing to free: connections belong to Django."""

    def __repr__(self) -> str:
        return f"<DjangoJobStore using={self.using or db_alias()!r}>"
