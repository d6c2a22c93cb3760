"""Firing cron ticks: each tick is claimed with a unique row before anything is published.

``fire(name)`` is the callable every APScheduler job in :mod:`.jobstore` runs. It re-reads the
schedule row, lists the ticks due since the row's next fire time, lets the schedule's misfire
policy pick which of them fire, and for each one:

1. **claims** it: inserts the tick's ``JobRun`` (``cron``, ``scheduled_for``), unique per tick
   (``fj_run_one_per_tick``). An IntegrityError means another ``runcrons`` claimed it: nothing
   else happens. This, not the leader lease, is why a tick fires once however many schedulers run;
2. **publishes** the run once the claim is committed. If the broker does not take it, the row
   stays claimed and unpublished, and :func:`publish_pending` retries it on every loop until it
   is published: a claimed tick is never lost, and never run inline inside the scheduler.

Ticks that do not fire (missed under policy ``skip`` or ``latest``, past ``max_lateness``, over
the catch-up limit, or whose task is gone) are recorded as ``skipped`` runs with the reason, up to
``FUSION_JOBS_CRON_SKIPPED_RECORD_LIMIT`` of them; the oldest recorded one counts the rest.

Every decision takes the time from a ``clock`` (a ``now()`` callable), so tests replay outages,
clock jumps and DST changes without sleeping. Row timestamps (enqueued, finished) stay real time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from .. import metrics
from ..conf import jobs_settings
from ..exceptions import CronError, PublishError, UnknownTaskError
from ..models import CronSchedule, JobRun, RunMode, RunStatus
from ..outbox import Outgoing, publish_and_mark
from ..recording import db_alias
from ..registry import Task, get_task
from .jobstore import DjangoJobStore
from .ticks import REASON_LIMIT, plan_ticks, seconds_text
from .triggers import CrontabTrigger

logger = logging.getLogger("fusion_jobs.crons")

Clock = Callable[[], datetime]
PublishFn = Callable[[Task, str, dict[str, Any]], None]


class Publisher:
    """Publishes claimed runs for one scheduler round; after one failure it stops trying.

    A broker that is down costs one publish timeout per round, not one per tick: the rest of
    the round's claims stay unpublished for :func:`publish_pending`. ``publish_fn``: what sends
    a run (tests); the chosen backend by default.
    """

    def __init__(self, publish_fn: PublishFn | None = None) -> None:
        self.publish_fn = publish_fn
        self.failed: PublishError | None = None
        self.published = 0
        self.deferred = 0

    def _send(self, messages: Sequence[Outgoing]) -> None:
        assert self.publish_fn is not None
        for m in messages:
            self.publish_fn(m.task, m.run_id, m.kwargs)

    def __call__(self, task_obj: Task, run_id: str, payload: dict[str, Any]) -> bool:
        if self.failed is None:
            send = self._send if self.publish_fn is not None else None
            unpublished = publish_and_mark([Outgoing(task_obj, run_id, payload)], publish=send)
            if unpublished is None:
                self.published += 1
                return True
            self.failed = unpublished.error  # the run stays claimed, and publish_pending retries it
        self.deferred += 1
        return False


# --- Firing one schedule -----------------------------------------------------------------------


@dataclass
class FireResult:
    """What one ``fire_schedule`` call did."""

    name: str
    fired: list[tuple[datetime, str]] = field(default_factory=list)  # (tick, run id) claimed here
    taken: list[datetime] = field(default_factory=list)  # ticks another scheduler had claimed
    skipped: int = 0  # skipped ticks recorded here
    unrecorded: int = 0
    next_fire: datetime | None = None


def _row(schedule: CronSchedule, task_obj: Task | None, tick: datetime, by: str) -> JobRun:
    return JobRun.new_run(
        task_obj,
        dict(schedule.input),
        task_name=schedule.task_name,
        enqueued_by=by,
        cron=schedule,
        scheduled_for=tick,
    )


def claim_tick(schedule: CronSchedule, task_obj: Task, tick: datetime, *, by: str) -> JobRun | None:
    """Insert the tick's run; None when another scheduler already claimed (or skipped) this tick."""
    row = _row(schedule, task_obj, tick, by)
    try:
        with transaction.atomic(using=db_alias()):
            row.save(force_insert=True, using=db_alias())
    except IntegrityError:
        return None
    return row


def _record_skipped(
    schedule: CronSchedule, task_obj: Task | None, skips: list[tuple[datetime, str]], by: str
) -> int:
    """Insert ``skipped`` runs for ticks that do not fire; a tick another scheduler already claimed or
    recorded is left alone (ON CONFLICT DO NOTHING on the one-run-per-tick constraint)."""
    if not skips:
        return 0
    now = timezone.now()
    rows = []
    for tick, reason in skips:
        row = _row(schedule, task_obj, tick, by)
        row.status = RunStatus.SKIPPED
        row.skip_reason = reason[:REASON_LIMIT]
        row.finished_at = now
        rows.append(row)
    JobRun.objects.using(db_alias()).bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def fire_schedule(
    name: str,
    *,
    clock: Clock = timezone.now,
    publisher: Publisher | None = None,
    fired_by: str = "",
) -> FireResult:
    """Fire the due ticks of schedule ``name`` according to its policy (see the module docstring)."""
    alias = db_alias()
    publisher = publisher or Publisher()
    now = clock()
    result = FireResult(name)
    schedule = CronSchedule.objects.using(alias).filter(name=name).first()
    if (
        schedule is None
        or not schedule.active
        or schedule.next_fire_at is None
        or schedule.next_fire_at > now
    ):
        return result
    try:
        trigger = CrontabTrigger(schedule.expression, schedule.timezone)
    except CronError as exc:
        logger.error("cron %s cannot fire: %s", name, exc)
        return result
    plan = plan_ticks(
        trigger,
        schedule.next_fire_at,
        now,
        policy=schedule.misfire,
        max_lateness=schedule.max_lateness,
        grace=float(jobs_settings.CRON_GRACE),
        catchup_limit=int(jobs_settings.CRON_CATCHUP_LIMIT),
        record_limit=int(jobs_settings.CRON_SKIPPED_RECORD_LIMIT),
    )
    result.next_fire, result.unrecorded = plan.next_fire, plan.unrecorded
    by = f"cron {name}" + (f" via {fired_by}" if fired_by else "")
    by = by[:200]
    try:
        task_obj: Task | None = get_task(schedule.task_name)
    except UnknownTaskError:
        task_obj = None
        reason = f"task {schedule.task_name!r} is not registered in this runcrons (renamed or removed?)"
        logger.error("cron %s: %s; its ticks are recorded as skipped", name, reason)
        plan.skip = sorted([*plan.skip, *((tick, reason) for tick in plan.fire)])
        plan.fire = []
    result.skipped = _record_skipped(schedule, task_obj, plan.skip, by)
    metrics.cron_tick(name, "skipped", len(plan.skip) + plan.unrecorded)
    if result.skipped or plan.unrecorded:
        logger.warning(
            "cron %s: %d missed tick(s) skipped (misfire=%s%s)%s",
            name,
            len(plan.skip) + plan.unrecorded,
            schedule.misfire,
            f", max_lateness={schedule.max_lateness:.0f} s" if schedule.max_lateness else "",
            f", {plan.unrecorded} not recorded one by one" if plan.unrecorded else "",
        )
    last: tuple[datetime, JobRun] | None = None
    for tick in plan.fire:
        assert task_obj is not None
        run = claim_tick(schedule, task_obj, tick, by=by)
        if run is None:
            result.taken.append(tick)
            logger.debug("cron %s tick %s was claimed by another scheduler", name, tick.isoformat())
            continue
        result.fired.append((tick, str(run.pk)))
        late = (now - tick).total_seconds() > float(jobs_settings.CRON_GRACE)
        metrics.cron_tick(name, "late" if late else "fired")
        last = (tick, run)
        logger.info(
            "cron %s fired tick %s (%s late) -> %s run %s",
            name,
            tick.isoformat(),
            seconds_text(now - tick),
            task_obj.name,
            run.pk,
        )
        transaction.on_commit(partial(publisher, task_obj, str(run.pk), dict(run.kwargs)), using=alias)
    # Move the schedule on, unless another scheduler (or a new declaration) already did.
    CronSchedule.objects.using(alias).filter(pk=schedule.pk, next_fire_at=schedule.next_fire_at).update(
        next_fire_at=plan.next_fire
    )
    if last is not None:
        CronSchedule.objects.using(alias).filter(pk=schedule.pk).filter(
            Q(last_fired_at__isnull=True) | Q(last_fired_at__lt=last[0])
        ).update(last_fired_at=last[0], last_run=last[1])
    return result


def fire_due(
    *, clock: Clock = timezone.now, publisher: Publisher | None = None, fired_by: str = ""
) -> list[FireResult]:
    """Fire every schedule that is due at ``clock()``, earliest first (``runcrons --once``, tests)."""
    publisher = publisher or Publisher()
    results = []
    for job in DjangoJobStore().get_due_jobs(clock()):
        try:
            results.append(fire_schedule(job.id, clock=clock, publisher=publisher, fired_by=fired_by))
        except Exception:
            logger.exception("cron %s: firing failed; it is tried again at the next poll", job.id)
    return results


# --- The APScheduler entry point ---------------------------------------------------------------


@dataclass
class Runtime:
    """What ``fire`` uses inside ``runcrons``: set by the runner for each scheduler round."""

    clock: Clock = timezone.now
    publisher: Publisher = field(default_factory=Publisher)
    fired_by: str = ""


runtime = Runtime()


def start_round(clock: Clock, publisher: Publisher, fired_by: str) -> None:
    """Set what ``fire`` uses until the next round (``runcrons`` calls it as each round begins)."""
    runtime.clock, runtime.publisher, runtime.fired_by = clock, publisher, fired_by


def fire(name: str, **columns: Any) -> FireResult:
    """The callable of every cron job (``fusion_jobs.scheduler.firing:fire``).

    ``columns`` (task and input, as the job store read them) are informational: the row is
    re-read here, so a pause or a new declaration since the poll is respected.
    """
    return fire_schedule(name, clock=runtime.clock, publisher=runtime.publisher, fired_by=runtime.fired_by)


# --- Claimed but unpublished ticks -------------------------------------------------------------


def publish_pending(
    *, min_age: float | None = None, limit: int = 200, publisher: Publisher | None = None
) -> int:
    """Publish cron runs that were claimed but never reached the broker; return how many were.

    Runs young enough to still be in their claimer's hands (``min_age``, twice the publish
    timeout by default) are left alone. Rows are taken with SKIP LOCKED, so two schedulers in a
    handover do not publish the same run twice (and a worker skips a duplicate anyway).
    """
    publisher = publisher or Publisher()
    if publisher.failed is not None:
        return 0
    age = float(jobs_settings.PUBLISH_TIMEOUT) * 2 + 1 if min_age is None else min_age
    alias = db_alias()
    published = 0
    with transaction.atomic(using=alias):
        rows = list(
            JobRun.objects.using(alias)
            .select_for_update(skip_locked=True)
            .filter(
                cron__isnull=False,
                mode=RunMode.WORKER,
                status=RunStatus.QUEUED,
                published_at__isnull=True,
                enqueued_at__lte=timezone.now() - timedelta(seconds=age),
            )
            .order_by("enqueued_at")[:limit]
        )
        for run in rows:
            try:
                task_obj = get_task(run.task_name)
            except UnknownTaskError:
                continue  # the outbox relay fails it with the reason
            if not publisher(task_obj, str(run.pk), dict(run.kwargs)):
                break
            published += 1
    if published:
        logger.info("published %d claimed cron run(s) that had not reached the broker", published)
    return published


def run_now(schedule: CronSchedule, *, requested_by: str, publisher: Publisher | None = None) -> JobRun:
    """Queue one run of the schedule's task now (the admin's "run now"): queued, never inline.

    It is not a tick (no ``scheduled_for``), so it never collides with one. If the broker does
    not take it, it stays queued and :func:`publish_pending` publishes it later.
    """
    task_obj = get_task(schedule.task_name)
    publisher = publisher or Publisher()
    run = _row(schedule, task_obj, timezone.now(), f"admin run-now by {requested_by}"[:200])
    run.scheduled_for = None
    alias = db_alias()
    run.save(force_insert=True, using=alias)
    transaction.on_commit(partial(publisher, task_obj, str(run.pk), dict(run.kwargs)), using=alias)
    return run
