"""``fusion_jobs.next_fire_times``: the public preview of a crontab expression (no database needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

import fusion_jobs
from fusion_jobs import CronError


def test_the_next_five_in_utc_by_default():
    ticks = fusion_jobs.next_fire_times("*/15 * * * *", after=datetime(2026, 1, 1, 0, 7, tzinfo=UTC))
    assert ticks == [datetime(2026, 1, 1, 0, m, tzinfo=UTC) for m in (15, 30, 45)] + [
        datetime(2026, 1, 1, 1, 0, tzinfo=UTC),
        datetime(2026, 1, 1, 1, 15, tzinfo=UTC),
    ]
    assert all(t.utcoffset() == timedelta(0) for t in ticks)


def test_ticks_are_aware_in_the_schedules_zone_and_strictly_after():
    after = datetime(2026, 3, 28, 0, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    ticks = fusion_jobs.next_fire_times("0 0 * * *", timezone="Europe/Berlin", after=after, count=3)
    assert [t.isoformat() for t in ticks] == [
        "2026-03-29T00:00:00+01:00",
        "2026-03-30T00:00:00+02:00",
        "2026-03-31T00:00:00+02:00",
    ]
    assert all(isinstance(t.tzinfo, ZoneInfo) and t.tzinfo.key == "Europe/Berlin" for t in ticks)


def test_after_defaults_to_now():
    before = datetime.now(UTC)
    [tick] = fusion_jobs.next_fire_times("* * * * *", count=1)
    assert before < tick <= before + timedelta(minutes=1)


def test_count_zero_and_macros():
    assert fusion_jobs.next_fire_times("@daily", count=0) == []
    [tick] = fusion_jobs.next_fire_times("@yearly", after=datetime(2026, 5, 1, tzinfo=UTC), count=1)
    assert tick == datetime(2027, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"expr": "* * * jan5 *"}, "month field 'jan5'"),
        ({"expr": "0 9 * * *", "timezone": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
        ({"expr": "0 9 * * *", "timezone": ""}, "unknown timezone"),
        # Files in the zoneinfo tree that are the host's setting, not a place: each host would read
        # the schedule in its own zone.
        ({"expr": "0 9 * * *", "timezone": "localtime"}, "the host's own zone"),
        ({"expr": "0 9 * * *", "timezone": "posixrules"}, "the host's own zone"),
        ({"expr": "0 9 * * *", "after": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"expr": "0 9 * * *", "count": -1}, "count"),
    ],
)
def test_bad_input_raises_cron_error(kwargs, message):
    with pytest.raises(CronError, match=message):
        fusion_jobs.next_fire_times(**kwargs)


def test_exported_from_the_package():
    assert "next_fire_times" in fusion_jobs.__all__


@pytest.mark.parametrize(
    ("expr", "zone", "after", "expected"),
    [
        ("0 0 29 2 *", "UTC", datetime(9990, 1, 1, tzinfo=UTC), ["9992-02-29", "9996-02-29"]),
        ("0 0 1 1 *", "UTC", datetime(9999, 1, 1, tzinfo=UTC), []),
        ("0 0 1 1 *", "UTC", datetime(9999, 12, 31, 23, 59, tzinfo=UTC), []),
        ("* * * * *", "UTC", datetime(9999, 12, 31, 23, 59, tzinfo=UTC), None),
        ("0 0 31 * *", "Etc/GMT+12", datetime(9999, 12, 30, tzinfo=UTC), None),
        (
            "* * * * *",
            "Pacific/Kiritimati",
            datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5))),
            None,
        ),
        ("0 0 1 1 *", "Etc/GMT-12", datetime(1, 1, 1, tzinfo=UTC), ["0002-01-01", "0003-01-01"]),
    ],
)
def test_the_ends_of_datetimes_range_give_the_ticks_that_fit_never_a_datetime_error(
    expr, zone, after, expected
):
    """A preview ``after`` year 9999 (or at year 1) must not escape as OverflowError/ValueError: past the
    last representable instant there are no ticks."""
    ticks = fusion_jobs.next_fire_times(expr, timezone=zone, after=after, count=5)
    assert all(tick > after for tick in ticks)
    if expected is not None:
        assert [tick.date().isoformat() for tick in ticks][: len(expected)] == expected


@pytest.mark.parametrize(
    "moment",
    [datetime(1, 1, 1, 0, 30, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, tzinfo=UTC)],
)
def test_next_ticks_at_the_ends_of_datetimes_range_are_none_or_a_tick(moment):
    from fusion_jobs.scheduler.crontab import ZonedCron

    for zone in ("UTC", "Etc/GMT+12", "Etc/GMT-14"):
        cron = ZonedCron("0 0 1 1 *", zone)
        following = cron.next_after(moment)
        assert following is None or following > moment
