"""Differential test: our ticks against cronsim (Debian cron's rules) on thousands of random crons.

Seeded and pure (no database, no broker). Random valid expressions (lists, ranges, steps, month
and weekday names, Sunday as 0 and 7, the day-of-month/day-of-week OR rule, macros) x five zones
(UTC, Europe/Berlin, America/New_York, Australia/Sydney, Australia/Lord_Howe) x start instants
across 2019-2031 (random, next to a DST change, on leap days). For each case the next 20 ticks
are compared with what the reference implies.

Where the reference is wrong or differs by design, nothing is skipped: the expected value comes
from a documented rule and the case is counted in its class (the counts are printed, ``-s``).

Reference bugs, worked around before asking it:

* ``RANGE_STEP``: cronsim reads a one-value range with a step (``4-4/1``, ``mar-3/2``) as
  ``a/step``, i.e. from ``a`` to the field's maximum; Vixie cron and we read it as ``a``. The
  reference is given the single value instead.

Local days with a UTC-offset change (``CHANGE_DAY``): our documented semantics differ from
Debian cron's by design, and cronsim also errs there (it steps hours in UTC, so on Lord Howe's
30-minute change it lands on :30 and misses the first half of the next hour). On those days the expected ticks come from an
independent minute-by-minute oracle over the reference's parsed fields, with our rules:

* a wall time that does not exist fires once, shifted forward by the gap (zoneinfo ``fold=0``:
  the offset before the jump), unless the hour field starts with ``*``: then it does not fire.
  Debian cron instead fires a fixed time at the end of the gap (02:30 -> 03:00, not 03:30) and
  treats a ``*``-prefixed MINUTE field as a wildcard job too (``*/15 2 * * *`` skips the gap);
* a wall time that happens twice fires at its first pass only, unless the hour field starts
  with ``*``: then at both passes (an hourly cron fires every real hour). Debian cron fires
  both passes when the minute field starts with ``*`` as well.

croniter (also installed) is not the reference: tried on the same generator in UTC it disagreed
with Vixie cron and cronsim on about a quarter of the expressions (it ORs the day fields when one
is ``*/1``, misreads one-value ranges such as ``19-19`` and gives up on rare dates).

The classes are counted per case: ``CHANGE_DAY`` cases where cronsim's own answer differs from
ours (per class of the expression: fixed time, ``*`` minute with a fixed hour, ``*`` hour);
every other case must agree with cronsim exactly.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim, CronSimError

from fusion_jobs.exceptions import CronError
from fusion_jobs.scheduler.crontab import DAY_NAMES, MONTH_NAMES, ZonedCron

SEED = 20260329
EXPRESSIONS = 2000
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Australia/Sydney", "Australia/Lord_Howe")
TICKS = 20
#: Ticks further than this from the start are not compared (cronsim gives up after 50 years).
HORIZON = timedelta(days=40 * 365)
FIRST, LAST = datetime(2019, 1, 1, tzinfo=UTC), datetime(2032, 1, 1, tzinfo=UTC)


# -- random valid expressions ------------------------------------------------------------------


def _value(rng: random.Random, low: int, high: int, names: tuple[str, ...], hot: tuple[int, ...]) -> int:
    if hot and rng.random() < 0.3:
        return rng.choice(hot)
    return rng.randint(low, high)


def _text(rng: random.Random, number: int, low: int, names: tuple[str, ...]) -> str:
    if names and number - low < len(names) and rng.random() < 0.35:
        name = names[number - low]
        return rng.choice((name, name.upper(), name.capitalize()))
    return str(number)


def _item(rng: random.Random, low: int, high: int, names: tuple[str, ...], hot: tuple[int, ...]) -> str:
    kind = rng.random()
    a = _value(rng, low, high, names, hot)
    if kind < 0.35:
        return _text(rng, a, low, names)
    b = rng.randint(a, high)
    step = rng.randint(1, high - low + 2)
    if kind < 0.6:
        return f"{_text(rng, a, low, names)}-{_text(rng, b, low, names)}"
    if kind < 0.75:
        return f"{_text(rng, a, low, names)}-{_text(rng, b, low, names)}/{step}"
    if kind < 0.87:
        return f"*/{step}"
    return f"{_text(rng, a, low, names)}/{step}"


def _field(rng, low, high, star, names=(), hot=()):
    if rng.random() < star:
        return "*"
    return ",".join(_item(rng, low, high, names, hot) for _ in range(rng.choice((1, 1, 1, 2, 3))))


def random_expression(rng: random.Random) -> str:
    if rng.random() < 0.02:
        return rng.choice(("@yearly", "@monthly", "@weekly", "@daily", "@hourly"))
    return " ".join(
        (
            _field(rng, 0, 59, 0.15, hot=(0, 15, 30, 45)),
            _field(rng, 0, 23, 0.3, hot=(0, 1, 2, 3)),  # DST changes happen at 02:00-03:00
            _field(rng, 1, 31, 0.55, hot=(1, 28, 29, 30, 31)),
            _field(rng, 1, 12, 0.6, MONTH_NAMES, hot=(2, 3, 4, 10, 11)),
            _field(rng, 0, 7, 0.55, DAY_NAMES, hot=(0, 7)),  # 7 stays a number: "sun" is 0
        )
    )


_NAMES = {name: n for n, name in enumerate(MONTH_NAMES, 1)} | {name: n for n, name in enumerate(DAY_NAMES)}
_RANGE_STEP = re.compile(r"^(\w+)-(\w+)/\d+$")


#: cronsim has no macros; Vixie cron's meaning of each.
REFERENCE_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def reference_text(expr: str) -> tuple[str, bool]:
    """The expression as given to cronsim, and whether the RANGE_STEP workaround changed it."""
    fields = REFERENCE_MACROS.get(expr, expr).split(" ")
    if len(fields) != 5:
        return expr, False
    changed = False
    out = []
    for field in fields:
        items = []
        for item in field.split(","):
            match = _RANGE_STEP.match(item)
            if match:
                a, b = (int(x) if x.isdigit() else _NAMES[x.lower()] for x in match.groups())
                if a == b:
                    item, changed = match.group(1), True
            items.append(item)
        out.append(",".join(items))
    return " ".join(out), changed


# -- days with an offset change, and the oracle for them ---------------------------------------


@cache
def change_days(zone_name: str, year: int) -> frozenset[date]:
    """Local dates (either side) of every UTC-offset change of ``zone_name`` in UTC year ``year``."""
    zone = ZoneInfo(zone_name)
    days: set[date] = set()
    moment = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    step = timedelta(hours=6)
    while moment < end:
        after = moment + step
        if moment.astimezone(zone).utcoffset() != after.astimezone(zone).utcoffset():
            low, high = moment, after
            while high - low > timedelta(minutes=1):
                middle = low + (high - low) / 2
                if middle.astimezone(zone).utcoffset() == low.astimezone(zone).utcoffset():
                    low = middle
                else:
                    high = middle
            days.update((low.astimezone(zone).date(), high.astimezone(zone).date()))
        moment = after
    return frozenset(days)


def is_change_day(zone_name: str, day: date) -> bool:
    return any(day in change_days(zone_name, year) for year in (day.year - 1, day.year, day.year + 1))


def oracle_day(ref: CronSim, hour_star: bool, zone: ZoneInfo, day: date) -> list[datetime]:
    """Our documented ticks for one local day, minute by minute (see the module docstring)."""
    if day.month not in ref.months or not ref.match_day(day):
        return []
    ticks: list[datetime] = []
    for hour in sorted(ref.hours):
        for minute in sorted(ref.minutes):
            wall = datetime.combine(day, time(hour, minute))
            first, second = wall.replace(tzinfo=zone, fold=0), wall.replace(tzinfo=zone, fold=1)
            if first.utcoffset() == second.utcoffset():  # an ordinary wall time
                ticks.append(first.astimezone(UTC))
                continue
            passes = sorted(
                {
                    candidate.astimezone(UTC)
                    for candidate in (first, second)
                    if candidate.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall
                }
            )
            if not passes:  # inside a gap: shifted forward by it, unless the hour is "*"
                if not hour_star:
                    shifted = first.astimezone(UTC)
                    gap = shifted.astimezone(zone).replace(tzinfo=None) - wall
                    assert gap > timedelta(0)
                    ticks.append(shifted)
            else:
                ticks.extend(passes if hour_star else passes[:1])
    return ticks


# -- one case ------------------------------------------------------------------------------------


def reference_next(expr: str, zone: ZoneInfo, start: datetime, until: datetime) -> list[datetime]:
    ticks: list[datetime] = []
    for tick in CronSim(expr, start.astimezone(zone)):
        tick = tick.astimezone(UTC)
        if tick > until or len(ticks) > 5 * TICKS:
            break
        ticks.append(tick)
    return ticks


def check_case(expr: str, zone_name: str, start: datetime, counts: Counter[str]) -> None:
    zone = ZoneInfo(zone_name)
    describe = f"{expr!r} in {zone_name} from {start.isoformat()}"
    ref_expr, rewritten = reference_text(expr)
    try:
        ours = ZonedCron(expr, zone_name)
    except CronError as exc:  # only a day that never occurs is refused; cronsim refuses it too
        assert "never fires" in str(exc), describe
        with pytest.raises(CronSimError):
            CronSim(ref_expr, start)
        counts["both refuse (never fires)"] += 1
        return
    counts["RANGE_STEP"] += rewritten
    ref = CronSim(ref_expr, start.astimezone(zone))
    minute_field, hour_field = ref_expr.split(" ")[:2]
    hour_star, minute_star = hour_field.startswith("*"), minute_field.startswith("*")

    # Next ticks: ours, bounded by TICKS and the horizon.
    got: list[datetime] = []
    moment = start
    while len(got) < TICKS and (tick := ours.next_after(moment)) is not None and tick <= start + HORIZON:
        got.append(tick)
        moment = tick
    until = got[-1] if len(got) == TICKS else start + HORIZON
    raw = reference_next(ref_expr, zone, start, until)
    off_change = [t for t in raw if not is_change_day(zone_name, t.astimezone(zone).date())]
    changes: set[date] = set()
    day = start.astimezone(zone).date()
    last_day = until.astimezone(zone).date()
    for year in range(day.year, last_day.year + 1):
        changes.update(d for d in change_days(zone_name, year) if day <= d <= last_day)
    oracle = [t for d in sorted(changes) for t in oracle_day(ref, hour_star, zone, d) if start < t <= until]
    expected = sorted(set(off_change) | set(oracle))[:TICKS]
    assert got == expected, f"{describe}: ours {got[:3]}..., expected {expected[:3]}..."
    if raw[: len(got)] != got:
        assert changes, f"{describe}: differs from cronsim on a day without an offset change"
        kind = "hour *" if hour_star else ("minute * fixed hour" if minute_star else "fixed time")
        counts[f"CHANGE_DAY next ({kind})"] += 1
        if hour_star:  # whole-hour changes agree by design; only a 30-minute change may differ
            assert zone_name == "Australia/Lord_Howe", describe


def random_start(rng: random.Random, zone_name: str) -> datetime:
    kind = rng.random()
    if kind < 0.2 and zone_name != "UTC":  # within two days of an offset change
        day = rng.choice(sorted(change_days(zone_name, rng.randint(2019, 2031))))
        local = datetime.combine(day, time(), tzinfo=ZoneInfo(zone_name))
        return local.astimezone(UTC) + timedelta(seconds=rng.randint(-2 * 86400, 2 * 86400))
    if kind < 0.3:  # around a leap day
        year = rng.choice((2020, 2024, 2028))
        return datetime(year, 2, 28, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 3 * 86400))
    moment = FIRST + timedelta(seconds=rng.randint(0, int((LAST - FIRST).total_seconds())))
    return moment.replace(second=rng.choice((0, 0, moment.second)), microsecond=0)


def test_against_cronsim():
    rng = random.Random(SEED)
    counts: Counter[str] = Counter()
    cases = 0
    for _ in range(EXPRESSIONS):
        expr = random_expression(rng)
        for zone_name in ZONES:
            check_case(expr, zone_name, random_start(rng, zone_name), counts)
            cases += 1
    print(f"\ndifferential: {cases} cases ({EXPRESSIONS} expressions x {len(ZONES)} zones); {dict(counts)}")
    assert cases == EXPRESSIONS * len(ZONES)
    # The generator must reach the interesting cases, or the test proves little.
    assert counts["RANGE_STEP"] > 50
    assert sum(v for k, v in counts.items() if k.startswith("CHANGE_DAY next")) > 20


def test_the_oracle_is_not_the_code_under_test():
    # A spot check of the oracle itself on Berlin's spring-forward day.
    zone = ZoneInfo("Europe/Berlin")
    ticks = oracle_day(CronSim("30 2 * * *", datetime(2026, 3, 1)), False, zone, date(2026, 3, 29))
    assert ticks == [datetime(2026, 3, 29, 1, 30, tzinfo=UTC)]  # 03:30 CEST
    hourly = oracle_day(CronSim("0 * * * *", datetime(2026, 3, 1)), True, zone, date(2026, 10, 25))
    assert len(hourly) == 25
