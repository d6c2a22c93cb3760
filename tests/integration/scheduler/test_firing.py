"""Firing ticks with an injected clock: claims, misfire policies, bounds, concurrency, retries of unpublished claims."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connections

import fusion_jobs
from fusion_jobs.models import CronSchedule, JobRun
from fusion_jobs.scheduler.firing import Publisher, fire_due, publish_pending
from fusion_jobs.scheduler.lease import Lease
from fusion_jobs.scheduler.runner import CronScheduler
from tests.conftest import wait_for
from tests.support.scheduler import FakeClock, Recorder

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def declare(name: str, expr: str, *, next_fire: datetime = T0, **options: object) -> CronSchedule:
    fusion_jobs.ensure_cron("t-cron-record", name, expr, {"label": name}, **options)  # type: ignore[arg-type]
    CronSchedule.objects.filter(name=name).update(next_fire_at=next_fire)
    return CronSchedule.objects.get(name=name)


def runs(name: str, status: str | None = None) -> list[JobRun]:
    queryset = JobRun.objects.filter(cron__name=name).order_by("scheduled_for")
    return list(queryset.filter(status=status) if status else queryset)


def at(hour: int, minute: int, second: int = 0, day: int = 1) -> datetime:
    return datetime(2026, 6, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.django_db
def test_an_on_time_tick_fires_once_and_the_schedule_moves_on(clock, recorder):
    declare("t-cron-m", "* * * * *")
    clock.set(at(12, 0, 2))
    [result] = fire_due(clock=clock, publisher=Publisher(recorder))
    assert [tick for tick, _ in result.fired] == [at(12, 0)]
    [run] = runs("t-cron-m")
    assert (run.status, run.mode, run.scheduled_for, run.kwargs) == (
        "queued",
        "worker",
        at(12, 0),
        {"label": "t-cron-m"},
    )
    assert run.enqueued_by == "cron t-cron-m"
    schedule = CronSchedule.objects.get(name="t-cron-m")
    assert (schedule.next_fire_at, schedule.last_fired_at, schedule.last_run_id) == (
        at(12, 1),
        at(12, 0),
        run.pk,
    )
    assert fire_due(clock=clock, publisher=Publisher(recorder)) == []  # nothing due twice
    clock.set(at(12, 1, 1))
    fire_due(clock=clock, publisher=Publisher(recorder))
    assert [r.scheduled_for for r in runs("t-cron-m")] == [at(12, 0), at(12, 1)]


@pytest.mark.django_db
def test_latest_fires_only_the_most_recent_missed_tick_and_records_the_rest(clock, recorder):
    declare("t-cron-latest", "* * * * *", misfire="latest")
    clock.set(at(13, 0, 30))  # runcrons was down from 12:00 to 13:00:30: 61 ticks due
    [result] = fire_due(clock=clock, publisher=Publisher(recorder))
    assert [tick for tick, _ in result.fired] == [at(13, 0)]
    assert [r.scheduled_for for r in runs("t-cron-latest", "queued")] == [at(13, 0)]
    skipped = runs("t-cron-latest", "skipped")
    assert len(skipped) == 20  # FUSION_JOBS_CRON_SKIPPED_RECORD_LIMIT
    assert [r.scheduled_for for r in skipped] == [at(12, 40 + i) for i in range(20)]
    assert "misfire=latest" in skipped[-1].skip_reason and "missed by 90 s" in skipped[-1].skip_reason
    assert "40 earlier missed tick(s) since 2026-06-01 12:00 UTC not recorded" in skipped[0].skip_reason
    assert all(r.finished_at is not None and r.started_at is None for r in skipped)
    assert CronSchedule.objects.get(name="t-cron-latest").next_fire_at == at(13, 1)


@pytest.mark.django_db
def test_all_fires_every_missed_tick_in_order(clock, recorder):
    declare("t-cron-all", "*/10 * * * *", misfire="all")
    clock.set(at(12, 25))
    fire_due(clock=clock, publisher=Publisher(recorder))
    assert [r.scheduled_for for r in runs("t-cron-all")] == [at(12, 0), at(12, 10), at(12, 20)]
    assert {r.status for r in runs("t-cron-all")} == {"queued"}


@pytest.mark.django_db
def test_all_is_capped(clock, recorder, settings):
    settings.FUSION_JOBS_CRON_CATCHUP_LIMIT = 5
    declare("t-cron-all", "*/10 * * * *", misfire="all")
    clock.set(at(13, 5))
    fire_due(clock=clock, publisher=Publisher(recorder))
    fired = [r.scheduled_for for r in runs("t-cron-all", "queued")]
    assert fired == [at(12, 20), at(12, 30), at(12, 40), at(12, 50), at(13, 0)]  # the most recent five
    skipped = runs("t-cron-all", "skipped")
    assert [r.scheduled_for for r in skipped] == [at(12, 0), at(12, 10)]
    assert all("beyond the catch-up limit of 5 ticks" in r.skip_reason for r in skipped)


@pytest.mark.django_db
def test_skip_fires_no_missed_tick(clock, recorder):
    declare("t-cron-skip", "0 * * * *", misfire="skip")
    clock.set(at(14, 30))  # 12:00, 13:00 and 14:00 all missed (14:00 is 30 min late)
    [result] = fire_due(clock=clock, publisher=Publisher(recorder))
    assert result.fired == []
    skipped = runs("t-cron-skip")
    assert [(r.status, r.scheduled_for) for r in skipped] == [
        ("skipped", at(12, 0)),
        ("skipped", at(13, 0)),
        ("skipped", at(14, 0)),
    ]
    assert "misfire=skip" in skipped[0].skip_reason
    assert CronSchedule.objects.get(name="t-cron-skip").next_fire_at == at(15, 0)
    clock.set(at(15, 0, 20))  # back to normal: an on-time tick fires under skip too
    fire_due(clock=clock, publisher=Publisher(recorder))
    assert [r.scheduled_for for r in runs("t-cron-skip", "queued")] == [at(15, 0)]


@pytest.mark.django_db
@pytest.mark.parametrize(("policy", "fired"), [("latest", [at(14, 0)]), ("all", [at(14, 0)]), ("skip", [])])
def test_max_lateness_bounds_every_policy(clock, recorder, policy, fired):
    declare("t-cron-late", "0 * * * *", misfire=policy, max_lateness=600)
    clock.set(at(14, 5))  # 14:00 is 5 min late (within 10 min), 12:00 and 13:00 are not
    fire_due(clock=clock, publisher=Publisher(recorder))
    assert [r.scheduled_for for r in runs("t-cron-late", "queued")] == fired
    too_late = [r for r in runs("t-cron-late", "skipped") if "over max_lateness 600 s" in r.skip_reason]
    assert [r.scheduled_for for r in too_late] == [at(12, 0), at(13, 0)]


@pytest.mark.django_db
def test_a_clock_jump_of_a_year_is_bounded(clock, recorder):
    declare("t-cron-jump", "* * * * *")
    clock.set(T0 + timedelta(days=365, seconds=10))
    started = time.monotonic()
    [result] = fire_due(clock=clock, publisher=Publisher(recorder))
    assert time.monotonic() - started < 5  # not 525,600 ticks walked one by one
    assert [tick for tick, _ in result.fired] == [T0 + timedelta(days=365)]
    skipped = runs("t-cron-jump", "skipped")
    assert len(skipped) == 20
    assert "at least" in skipped[0].skip_reason and "not recorded" in skipped[0].skip_reason
    assert CronSchedule.objects.get(name="t-cron-jump").next_fire_at == T0 + timedelta(days=365, minutes=1)


@pytest.mark.django_db
def test_a_clock_going_back_fires_nothing_twice(clock, recorder):
    declare("t-cron-back", "* * * * *")
    clock.set(at(12, 0, 5))
    fire_due(clock=clock, publisher=Publisher(recorder))
    clock.set(at(11, 0))
    assert fire_due(clock=clock, publisher=Publisher(recorder)) == []
    clock.set(at(12, 1, 5))
    fire_due(clock=clock, publisher=Publisher(recorder))
    assert [r.scheduled_for for r in runs("t-cron-back")] == [at(12, 0), at(12, 1)]


@pytest.mark.django_db
def test_paused_disabled_and_orphaned_schedules_do_not_fire(clock, recorder):
    for name in ("t-cron-paused", "t-cron-disabled", "t-cron-orphan", "t-cron-live"):
        declare(name, "* * * * *")
    CronSchedule.objects.filter(name="t-cron-paused").update(paused=True)
    CronSchedule.objects.filter(name="t-cron-disabled").update(enabled=False)
    CronSchedule.objects.filter(name="t-cron-orphan").update(orphaned=True)
    clock.set(at(12, 0, 1))
    fire_due(clock=clock, publisher=Publisher(recorder))
    assert list(JobRun.objects.values_list("cron__name", flat=True)) == ["t-cron-live"]


@pytest.mark.django_db
def test_ticks_of_a_task_that_is_gone_are_recorded_skipped(clock, recorder):
    declare("t-cron-live", "* * * * *")
    CronSchedule.objects.create(
        name="t-cron-gone", task_name="t-cron-renamed-away", expression="* * * * *", next_fire_at=T0
    )
    clock.set(at(12, 0, 1))
    fire_due(clock=clock, publisher=Publisher(recorder))
    [gone] = runs("t-cron-gone")
    assert gone.status == "skipped"
    assert "task 't-cron-renamed-away' is not registered" in gone.skip_reason
    assert CronSchedule.objects.get(name="t-cron-gone").next_fire_at == at(12, 1)
    assert runs("t-cron-live", "queued")  # the others keep firing


@pytest.mark.django_db(transaction=True)
def test_five_schedulers_fire_each_tick_exactly_once(clock, recorder):
    declare("t-cron-1m", "* * * * *")
    declare("t-cron-2m", "*/2 * * * *")
    declare("t-cron-1h", "0 * * * *")
    schedulers = 5
    barrier = threading.Barrier(schedulers + 1)
    claimed: list[list[str]] = [[] for _ in range(schedulers)]
    errors: list[BaseException] = []
    steps = 21  # 12:00 .. 12:20

    def scheduler(index: int) -> None:
        try:
            for _ in range(steps):
                barrier.wait(timeout=30)
                for result in fire_due(clock=clock, publisher=Publisher(recorder), fired_by=f"s{index}"):
                    claimed[index].extend(run_id for _, run_id in result.fired)
                barrier.wait(timeout=30)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=scheduler, args=(i,)) for i in range(schedulers)]
    for thread in threads:
        thread.start()
    for step in range(steps):
        clock.set(at(12, step, 1))
        barrier.wait(timeout=30)  # all five fire at the same simulated moment...
        barrier.wait(timeout=30)  # ...and finish before the clock moves
    for thread in threads:
        thread.join(30)
    assert not errors
    assert [len(runs(name)) for name in ("t-cron-1m", "t-cron-2m", "t-cron-1h")] == [21, 11, 1]
    every_claim = [run_id for ids in claimed for run_id in ids]
    assert len(every_claim) == len(set(every_claim)) == 33  # each tick claimed by exactly one scheduler
    assert sorted(recorder.published) == sorted(every_claim)  # and published once
    assert not JobRun.objects.filter(status="skipped").exists()
    assert all(run.published_at is not None for run in JobRun.objects.all())


class CountingRecorder(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    def __call__(self, task_obj, run_id, payload):  # type: ignore[no-untyped-def]
        self.attempts += 1
        return super().__call__(task_obj, run_id, payload)


@pytest.mark.django_db(transaction=True)
def test_claimed_ticks_that_could_not_be_published_are_retried_until_they_are(clock):
    recorder = CountingRecorder()
    for name in ("t-cron-x", "t-cron-y", "t-cron-z"):
        declare(name, "* * * * *")
    recorder.down = True
    clock.set(at(12, 0, 1))
    results = fire_due(clock=clock, publisher=Publisher(recorder))
    assert sum(len(r.fired) for r in results) == 3
    assert recorder.attempts == 1  # a broker that is down costs one timeout per round, not one per tick
    assert JobRun.objects.filter(published_at__isnull=True, status="queued").count() == 3
    assert publish_pending(min_age=0, publisher=Publisher(recorder)) == 0  # still down: kept
    recorder.down = False
    assert publish_pending(min_age=3600, publisher=Publisher(recorder)) == 0  # too young to take over
    assert publish_pending(min_age=0, publisher=Publisher(recorder)) == 3
    assert JobRun.objects.filter(published_at__isnull=True).count() == 0
    assert sorted(recorder.published) == sorted(str(pk) for pk in JobRun.objects.values_list("pk", flat=True))
    assert publish_pending(min_age=0, publisher=Publisher(recorder)) == 0


def _run_scheduler(scheduler: CronScheduler) -> threading.Thread:
    def target() -> None:
        try:
            scheduler.start()
        finally:
            connections.close_all()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_the_apscheduler_loop_leader_standby_and_handover(recorder):
    """Two CronSchedulers on the real loop and lease (fake clock): one leads; when it dies, the other takes over."""
    clock = FakeClock(at(11, 59, 59))
    declare("t-cron-loop", "* * * * *")
    leader_lease, standby_lease = Lease(ttl=1.0, holder="first"), Lease(ttl=1.0, holder="second")
    first = CronScheduler(lease=leader_lease, poll_interval=0.05, clock=clock, publish_fn=recorder)
    first_thread = _run_scheduler(first)
    wait_for(lambda: leader_lease.held, timeout=10, what="the first scheduler to lead")
    second = CronScheduler(lease=standby_lease, poll_interval=0.05, clock=clock, publish_fn=recorder)
    second_thread = _run_scheduler(second)
    try:
        for minute in range(3):  # 12:00, 12:01, 12:02 fired by the leader
            clock.set(at(12, minute, 1))
            wait_for(
                lambda m=minute: len(runs("t-cron-loop")) == m + 1, timeout=10, what=f"tick 12:0{minute}"
            )
        assert not standby_lease.held
        # The leader dies without releasing its lease (its thread stops; the row stays).
        first.shutdown(wait=False)
        first_thread.join(10)
        wait_for(lambda: standby_lease.held, timeout=10, what="the standby to take over after the TTL")
        clock.set(at(12, 3, 1))
        wait_for(lambda: len(runs("t-cron-loop")) == 4, timeout=10, what="tick 12:03 from the new leader")
    finally:
        for scheduler in (first, second):
            if scheduler.running:
                scheduler.shutdown(wait=False)
        second_thread.join(10)
    fired_by = [r.enqueued_by for r in runs("t-cron-loop")]
    assert fired_by == ["cron t-cron-loop via first"] * 3 + ["cron t-cron-loop via second"]
    assert [r.scheduled_for for r in runs("t-cron-loop")] == [at(12, m) for m in range(4)]
    assert len(recorder.published) == 4
