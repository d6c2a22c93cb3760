"""Next ticks across daylight-saving changes: pure logic, no database, no broker.

Issue 13 item 1: the trigger used to increment fields in UTC (APScheduler issues 529/606) and
lost the day, week, month or year after a spring-forward change. Every example is asserted
through :class:`CrontabTrigger`, the object runcrons and ``firing.py`` use, starting BEFORE the
change day (the old DST tests started on the day itself, which hid the bug).

Documented semantics (README, "DST and parsing semantics"):

* a fixed wall time inside a spring-forward gap fires once, shifted by the gap;
* a repeated wall time on fall-back day fires once, at its first occurrence;
* a cron whose hour field starts with ``*`` fires at both passes of a repeated hour and never
  at a wall time that does not exist, so an hourly cron fires every real hour.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from fusion_jobs.scheduler.triggers import CrontabTrigger


def local(tz: str, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(tz), fold=fold)


def walk(expr: str, tz: str, start: datetime, count: int) -> list[str]:
    """The next ``count`` ticks after ``start`` as local 'Dow YYYY-MM-DD HH:MM +HHMM' strings."""
    trigger, zone, tick, out = CrontabTrigger(expr, tz), ZoneInfo(tz), start, []
    for _ in range(count):
        tick = trigger.next_after(tick)
        assert tick is not None and tick.tzinfo is UTC
        out.append(tick.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %z"))
    return out


def test_berlin_daily_midnight_keeps_the_monday_after_spring_forward():
    assert walk("0 0 * * *", "Europe/Berlin", local("Europe/Berlin", 2026, 3, 28, 12), 3) == [
        "Sun 2026-03-29 00:00 +0100",
        "Mon 2026-03-30 00:00 +0200",
        "Tue 2026-03-31 00:00 +0200",
    ]


def test_new_york_daily_midnight_keeps_the_monday_after_spring_forward():
    assert walk("0 0 * * *", "America/New_York", local("America/New_York", 2026, 3, 7, 12), 3) == [
        "Sun 2026-03-08 00:00 -0500",
        "Mon 2026-03-09 00:00 -0400",
        "Tue 2026-03-10 00:00 -0400",
    ]


def test_lord_howe_half_hour_change_daily_midnight():
    # 4 October 2026: 02:00 (+10:30) -> 02:30 (+11).
    assert walk("0 0 * * *", "Australia/Lord_Howe", local("Australia/Lord_Howe", 2026, 10, 3, 12), 3) == [
        "Sun 2026-10-04 00:00 +1030",
        "Mon 2026-10-05 00:00 +1100",
        "Tue 2026-10-06 00:00 +1100",
    ]


def test_weekly_from_the_saturday_before_spring_forward():
    assert walk("0 0 * * 1", "Europe/Berlin", local("Europe/Berlin", 2026, 3, 28), 2) == [
        "Mon 2026-03-30 00:00 +0200",
        "Mon 2026-04-06 00:00 +0200",
    ]


def test_monthly_does_not_skip_april():
    assert walk("0 0 1 * *", "Europe/Berlin", local("Europe/Berlin", 2026, 3, 28), 2) == [
        "Wed 2026-04-01 00:00 +0200",
        "Fri 2026-05-01 00:00 +0200",
    ]


def test_yearly_in_sydney_does_not_lose_a_year():
    # Sydney springs forward on 4 October 2026; the old trigger's first fire was 2028-01-01.
    assert walk("0 0 1 1 *", "Australia/Sydney", local("Australia/Sydney", 2026, 9, 1), 2) == [
        "Fri 2027-01-01 00:00 +1100",
        "Sat 2028-01-01 00:00 +1100",
    ]


@pytest.mark.parametrize(
    ("tz", "day", "expected"),
    [
        ("Europe/Berlin", (2026, 3, 29), "03:30 +0200"),  # 02:00 -> 03:00
        ("America/New_York", (2026, 3, 8), "03:30 -0400"),  # 02:00 -> 03:00
        ("Australia/Sydney", (2026, 10, 4), "03:30 +1100"),  # 02:00 -> 03:00, southern spring
    ],
)
def test_a_fixed_time_inside_the_gap_fires_once_shifted_by_the_gap(tz, day, expected):
    ticks = walk("30 2 * * *", tz, local(tz, *day) - timedelta(days=1), 3)
    assert [t[4:] for t in ticks] == [
        f"{(datetime(*day) - timedelta(days=1)).date()} 02:30 {ticks[0][-5:]}",
        f"{datetime(*day).date()} {expected}",
        f"{(datetime(*day) + timedelta(days=1)).date()} 02:30 {expected[-5:]}",
    ]


def test_lord_howe_fixed_time_in_the_half_hour_gap_shifts_by_thirty_minutes():
    assert walk("15 2 * * *", "Australia/Lord_Howe", local("Australia/Lord_Howe", 2026, 10, 3, 12), 2) == [
        "Sun 2026-10-04 02:45 +1100",
        "Mon 2026-10-05 02:15 +1100",
    ]


def test_lord_howe_hourly_skips_the_wall_time_that_does_not_exist():
    ticks = walk("0 * * * *", "Australia/Lord_Howe", local("Australia/Lord_Howe", 2026, 10, 4, 0, 30), 3)
    assert ticks == ["Sun 2026-10-04 01:00 +1030", "Sun 2026-10-04 03:00 +1100", "Sun 2026-10-04 04:00 +1100"]


def test_lord_howe_fall_back_fixed_time_fires_once_hourly_fires_both_passes():
    # 5 April 2026: 02:00 (+11) -> 01:30 (+10:30); 01:30-01:59 happens twice.
    start = local("Australia/Lord_Howe", 2026, 4, 4, 12)
    assert walk("45 1 * * *", "Australia/Lord_Howe", start, 2) == [
        "Sun 2026-04-05 01:45 +1100",
        "Mon 2026-04-06 01:45 +1030",
    ]
    assert walk("45 * * * *", "Australia/Lord_Howe", local("Australia/Lord_Howe", 2026, 4, 5, 0, 50), 3) == [
        "Sun 2026-04-05 01:45 +1100",
        "Sun 2026-04-05 01:45 +1030",
        "Sun 2026-04-05 02:45 +1030",
    ]


def test_fall_back_fixed_time_fires_once_at_the_first_pass():
    start = local("Europe/Berlin", 2026, 10, 24, 12)
    assert walk("30 2 * * *", "Europe/Berlin", start, 2) == [
        "Sun 2026-10-25 02:30 +0200",
        "Mon 2026-10-26 02:30 +0100",
    ]
    # Queried from inside the second pass, the first one is not fired again.
    second_pass = local("Europe/Berlin", 2026, 10, 25, 2, 10, fold=1)
    assert walk("30 2 * * *", "Europe/Berlin", second_pass, 1) == ["Mon 2026-10-26 02:30 +0100"]


def test_hourly_fires_every_real_hour_on_both_change_days():
    for day, hours in (((2026, 3, 29), 23), ((2026, 10, 25), 25)):
        start = local("Europe/Berlin", *day) - timedelta(microseconds=1)
        end = local("Europe/Berlin", *day) + timedelta(days=1)
        trigger, tick, seen = CrontabTrigger("0 * * * *", "Europe/Berlin"), start, []
        while (tick := trigger.next_after(tick)) < end:
            seen.append(tick)
        assert len(seen) == hours
        assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(seen))


def test_the_shifted_tick_is_found_from_inside_the_gap_and_just_after_it():
    trigger = CrontabTrigger("30 2 * * *", "Europe/Berlin")
    shifted = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST
    for moment in (
        datetime(2026, 3, 29, 0, 59, tzinfo=UTC),  # 01:59 CET, just before the jump
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # 03:00 CEST, the jump
        datetime(2026, 3, 29, 1, 29, 59, tzinfo=UTC),
    ):
        assert trigger.next_after(moment) == shifted
    assert trigger.next_after(shifted) == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)


def test_a_historical_offset_change_without_dst():
    # Europe/Moscow left permanent +04 for +03 on 26 October 2014 (02:00 -> 01:00): 01:00 twice.
    assert walk("0 1 * * *", "Europe/Moscow", local("Europe/Moscow", 2014, 10, 25, 12), 2) == [
        "Sun 2014-10-26 01:00 +0400",
        "Mon 2014-10-27 01:00 +0300",
    ]
    # Pacific/Apia skipped 30 December 2011 entirely (-10 -> +14): 12:00 on the 30th, shifted by
    # the 24-hour gap, is 12:00 on the 31st, which fires once.
    assert walk("0 12 * * *", "Pacific/Apia", local("Pacific/Apia", 2011, 12, 29, 13), 2) == [
        "Sat 2011-12-31 12:00 +1400",
        "Sun 2012-01-01 12:00 +1400",
    ]


def test_get_next_fire_time_is_the_apscheduler_adapter():
    trigger = CrontabTrigger("0 0 * * *", "Europe/Berlin")
    now = local("Europe/Berlin", 2026, 3, 29, 0, 0)
    assert trigger.get_next_fire_time(None, now) == now.astimezone(UTC)
    assert trigger.get_next_fire_time(now, now) == local("Europe/Berlin", 2026, 3, 30)
