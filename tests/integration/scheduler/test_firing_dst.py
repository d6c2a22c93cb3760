"""Daylight saving time: a fake clock walks across spring-forward and fall-back; fire counts are documented.

The documented behaviour (README):

* daily ``30 2 * * *`` in Europe/Berlin fires **once** on both change days: on 29 March 2026
  (02:00 -> 03:00) at 03:30 CEST = 01:30 UTC (the missing 02:30 shifted by the gap); on
  25 October 2026 (03:00 -> 02:00) at the first 02:30 (CEST, 00:30 UTC), not again at 02:30 CET;
* hourly ``0 * * * *`` fires every real hour: 23 times on the short day, 25 on the long one;
* the same holds in America/New_York (8 March / 1 November 2026; there 01:30 is the repeated time).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

import fusion_jobs
from fusion_jobs.models import CronSchedule, JobRun
from fusion_jobs.scheduler.firing import Publisher, fire_due
from fusion_jobs.scheduler.triggers import CrontabTrigger
from tests.support.scheduler import FakeClock, Recorder

pytestmark = pytest.mark.django_db


def fires_on(day: datetime, expr: str, tz: str, step: timedelta = timedelta(minutes=5)) -> list[datetime]:
    """Walk the clock over the local day (with an hour of margin) and return the UTC times fired."""
    zone = ZoneInfo(tz)
    start = datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC) - timedelta(hours=1)
    end = (datetime(day.year, day.month, day.day, tzinfo=zone) + timedelta(days=1)).astimezone(UTC)
    fusion_jobs.ensure_cron("t-cron-record", "t-cron-dst", expr, {"label": "dst"}, timezone=tz)
    schedule = CronSchedule.objects.get(name="t-cron-dst")
    CronSchedule.objects.filter(pk=schedule.pk).update(
        next_fire_at=CrontabTrigger(expr, tz).next_at_or_after(start)
    )
    clock = FakeClock(start)
    publisher = Publisher(Recorder())
    while clock() < end:
        fire_due(clock=clock, publisher=publisher)
        clock.advance(seconds=step.total_seconds())
    local_day = day.date()
    fired = JobRun.objects.filter(cron=schedule).exclude(status="skipped").order_by("scheduled_for")
    assert not JobRun.objects.filter(status="skipped").exists()  # every tick was on time
    return [run.scheduled_for for run in fired if run.scheduled_for.astimezone(zone).date() == local_day]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_berlin_spring_forward_daily_0230_fires_once_at_0330_cest():
    assert fires_on(utc(2026, 3, 29), "30 2 * * *", "Europe/Berlin") == [utc(2026, 3, 29, 1, 30)]


def test_berlin_fall_back_daily_0230_fires_once_at_the_first_0230():
    assert fires_on(utc(2026, 10, 25), "30 2 * * *", "Europe/Berlin") == [utc(2026, 10, 25, 0, 30)]


def test_berlin_hourly_fires_23_times_on_the_short_day_and_25_on_the_long_one():
    spring = fires_on(utc(2026, 3, 29), "0 * * * *", "Europe/Berlin", step=timedelta(minutes=20))
    assert len(spring) == 23 and len(set(spring)) == 23
    CronSchedule.objects.all().delete()
    fall = fires_on(utc(2026, 10, 25), "0 * * * *", "Europe/Berlin", step=timedelta(minutes=20))
    assert len(fall) == 25 and len(set(fall)) == 25
    assert utc(2026, 10, 25, 0, 0) in fall and utc(2026, 10, 25, 1, 0) in fall  # 02:00 CEST and 02:00 CET


def test_new_york_spring_and_fall():
    assert fires_on(utc(2026, 3, 8), "30 2 * * *", "America/New_York") == [
        utc(2026, 3, 8, 7, 30)
    ]  # 03:30 EDT
    CronSchedule.objects.all().delete()
    assert fires_on(utc(2026, 11, 1), "30 1 * * *", "America/New_York") == [
        utc(2026, 11, 1, 5, 30)
    ]  # 01:30 EDT


def test_a_normal_day_fires_at_the_local_time():
    assert fires_on(utc(2026, 7, 1), "30 2 * * *", "Europe/Berlin") == [utc(2026, 7, 1, 0, 30)]


def test_the_shifted_spring_tick_survives_a_restart_inside_the_gap():
    # Stored next fire 01:30 UTC (the shifted 02:30), runcrons (re)started at 03:30 CEST: the tick
    # must still be found from there, although APScheduler finds it only from before the gap.
    fusion_jobs.ensure_cron(
        "t-cron-record", "t-cron-dst", "30 2 * * *", {"label": "d"}, timezone="Europe/Berlin"
    )
    CronSchedule.objects.update(next_fire_at=utc(2026, 3, 29, 1, 30))
    clock = FakeClock(utc(2026, 3, 29, 1, 30, 10))
    [result] = fire_due(clock=clock, publisher=Publisher(Recorder()))
    assert [tick for tick, _ in result.fired] == [utc(2026, 3, 29, 1, 30)]
    assert CronSchedule.objects.get().next_fire_at == utc(2026, 3, 30, 0, 30)


def test_firing_across_spring_forward_records_the_monday_tick():
    # Issue 13: the clock walks from Saturday to Wednesday; the stored next fire after Sunday's
    # midnight used to be Tuesday's, so Monday's run was never recorded.
    zone = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 3, 28, 12, tzinfo=zone).astimezone(UTC)
    fusion_jobs.ensure_cron(
        "t-cron-record", "t-cron-dst", "0 0 * * *", {"label": "d"}, timezone="Europe/Berlin"
    )
    CronSchedule.objects.update(
        next_fire_at=CrontabTrigger("0 0 * * *", "Europe/Berlin").next_at_or_after(start)
    )
    clock = FakeClock(start)
    publisher = Publisher(Recorder())
    while clock() < datetime(2026, 4, 1, 12, tzinfo=zone):
        fire_due(clock=clock, publisher=publisher)
        clock.advance(seconds=1800)
    fired = [run.scheduled_for.astimezone(zone) for run in JobRun.objects.order_by("scheduled_for")]
    assert [(t.day, t.hour) for t in fired] == [(29, 0), (30, 0), (31, 0), (1, 0)]
    assert not JobRun.objects.filter(status="skipped").exists()
