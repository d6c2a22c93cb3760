"""Every IANA zone: around one offset change per zone (seeded year, 1900-2037, historical changes
included), tick walks equal the minute-by-minute oracle of the documented
rules (see test_crontab_differential.py). Pure: no database, no broker."""

from __future__ import annotations

import random
import zoneinfo
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim

from fusion_jobs.scheduler.crontab import ZonedCron
from tests.integration.scheduler.test_crontab_differential import oracle_day

SEED = 1883  # the year North American railways adopted standard time
EXPRESSIONS = ("0 0 * * *", "30 2 * * *", "0 * * * *", "*/20 0-3 * * *", "45 23 * * *", "0 0 1 * *")


def first_change(zone: ZoneInfo, year: int) -> datetime | None:
    """The first offset change in UTC year ``year`` (to six hours; the oracle covers days)."""
    moment = datetime(year, 1, 1, tzinfo=UTC)
    offset = moment.astimezone(zone).utcoffset()
    for _ in range(4 * 366):
        moment += timedelta(hours=6)
        if moment.astimezone(zone).utcoffset() != offset:
            return moment
    return None


def walk_forward(cron: ZonedCron, low: datetime, high: datetime) -> list[datetime]:
    ticks, moment = [], low
    while (tick := cron.next_after(moment)) is not None and tick <= high:
        ticks.append(tick)
        moment = tick
    return ticks


def test_ticks_around_an_offset_change_in_every_zone():
    rng = random.Random(SEED)
    zones_checked = 0
    for name in sorted(zoneinfo.available_timezones()):
        zone = ZoneInfo(name)
        change = None
        for year in (rng.randint(1900, 2037), rng.randint(1970, 2037), 2026):
            change = first_change(zone, year)
            if change:
                break
        if change is None:
            continue  # no change in the years tried (a fixed-offset zone): nothing to compare
        zones_checked += 1
        low, high = change - timedelta(days=2, minutes=rng.randint(0, 90)), change + timedelta(days=2)
        days = {(change + timedelta(hours=hours)).astimezone(zone).date() for hours in range(-72, 73, 3)}
        for expr in EXPRESSIONS:
            cron = ZonedCron(expr, name)
            ref = CronSim(expr, datetime(2000, 1, 1))
            expected = sorted(  # a set: a wall time shifted out of a gap can meet a real one
                {
                    t
                    for day in days
                    for t in oracle_day(ref, expr.split(" ")[1].startswith("*"), zone, day)
                    if low < t <= high
                }
            )
            where = f"{expr!r} in {name} around {change.isoformat()}"
            assert walk_forward(cron, low, high) == expected, where
    assert zones_checked > 250  # of about 600 names, many of them aliases or fixed offsets
