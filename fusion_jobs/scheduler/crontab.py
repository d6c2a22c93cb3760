"""Five-field crontab expressions: strict parsing, and ticks computed in local wall-clock time.

Parsing follows Vixie cron (cronie, Debian cron), field by field, and refuses anything else with
a :class:`CronError` naming the field and the token:

* ``minute hour day-of-month month day-of-week``; each field a comma list of ``*``, a value,
  or a range ``a-b``, each optionally followed by ``/step``. ``a/step`` means ``a-max/step``; a
  step larger than the range keeps the first value (``*/60`` is minute 0). Months ``jan``-``dec``
  and weekdays ``sun``-``sat`` by name, case-insensitive; Sunday is 0 and 7.
* Day-of-month and day-of-week: when both are restricted a day matches if EITHER does; when
  either field starts with ``*`` (``*``, ``*/2``) both must match, as in Vixie cron.
* Macros: ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (``@midnight``),
  ``@hourly``. ``@reboot``, seconds fields and Quartz extensions (``L``, ``W``, ``#``, ``?``)
  are refused.

Ticks are found by walking matching wall-clock minutes (naive local datetimes) and only then
placing each one on the time line with :mod:`zoneinfo`. Incrementing in UTC instead (what
APScheduler 3's ``CronTrigger`` does) loses whole days after a spring-forward change. Where the
wall clock is not one-to-one with real time:

* a wall time that does not exist (spring forward) fires once, shifted forward by the gap
  (``30 2 * * *`` in Europe/Berlin fires at 03:30 CEST on 29 March 2026), unless the hour field
  starts with ``*``: such a cron is about elapsed hours, and the real hours still fire;
* a wall time that happens twice (fall back) fires once, at its first occurrence, unless the
  hour field starts with ``*``: then it fires at both, so an hourly cron fires every real hour.

This module imports only the standard library: ``import fusion_jobs`` stays light.
"""

from __future__ import annotations

import calendar
import re
from bisect import bisect_left, bisect_right
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..exceptions import CronError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
#: (name, lowest, highest, names) per field; day-of-week runs to 7, another Sunday.
_FieldSpec = tuple[str, int, int, dict[str, int]]
FIELDS: tuple[_FieldSpec, ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, {name: number for number, name in enumerate(MONTH_NAMES, 1)}),
    ("day-of-week", 0, 7, {name: number for number, name in enumerate(DAY_NAMES)}),
)
_UNITS = {
    "minute": "minute",
    "hour": "hour",
    "day-of-month": "day",
    "month": "month",
    "day-of-week": "weekday",
}
_LONGEST_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
#: How far a search looks for a match: one Gregorian cycle (every date/weekday pair recurs in it).
SEARCH_YEARS = 400
_NUMBER = re.compile(r"[0-9]{1,9}")
_MINUTE = timedelta(minutes=1)
_TINY = timedelta(microseconds=1)


def _bad(expr: str, field: str, item: str, why: str) -> CronError:
    return CronError(f"bad cron expression {expr!r}: {field} field {item!r}: {why}")


def normalise_expression(expr: str) -> str:
    """The expression with single spaces and macros expanded, after checking every field."""
    text = _expand(expr)
    parse(text)
    return text


def _expand(expr: object) -> str:
    if not isinstance(expr, str):
        raise CronError(f"bad cron expression {expr!r}: expected a string")
    text = " ".join(expr.split())
    if text.startswith("@"):
        macro = MACROS.get(text.lower())
        if macro is None:
            raise CronError(
                f"bad cron expression {expr!r}: unknown macro (supported: {', '.join(MACROS)}; "
                "@reboot is not, a schedule has no boot)"
            )
        return macro
    count = len(text.split(" ")) if text else 0
    if count != 5:
        raise CronError(
            f"bad cron expression {expr!r}: expected five fields 'minute hour day-of-month month "
            f"day-of-week' (or one of {', '.join(MACROS)}), got {count}"
        )
    return text


def _value(token: str, spec: _FieldSpec, expr: str, item: str) -> int:
    field, low, high, names = spec
    if _NUMBER.fullmatch(token):
        number = int(token)
        if low <= number <= high:
            return number
        raise _bad(expr, field, item, f"{_UNITS[field]} {token!r} is out of range {low}-{high}")
    named = names.get(token.lower())
    if named is not None:
        return named
    what = f"a number {low}-{high}"
    if names:
        ordered = sorted(names, key=names.__getitem__)
        what += f" or a name {ordered[0]}-{ordered[-1]}"
    if not token:
        raise _bad(expr, field, item, f"a {_UNITS[field]} is missing")
    raise _bad(expr, field, item, f"{_UNITS[field]} {token!r} is not {what}")


def _parse_field(text: str, spec: _FieldSpec, expr: str) -> frozenset[int]:
    field, low, high, _ = spec
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise _bad(expr, field, text, "empty list item")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not _NUMBER.fullmatch(step_text) or int(step_text) == 0:
                raise _bad(expr, field, item, f"step {step_text!r} is not a whole number from 1")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            start, _, end = base.partition("-")
            first, last = _value(start, spec, expr, item), _value(end, spec, expr, item)
            if first > last:
                raise _bad(expr, field, item, "the range runs backwards")
        else:
            first = _value(base, spec, expr, item)
            last = high if slash else first  # "a/s" is "a-max/s", as in Vixie cron
        values.update(range(first, last + 1, step))
    return frozenset(values)


class CronExpression:
    """The parsed fields of a five-field expression, and the matching wall-clock minutes."""

    __slots__ = ("day_or", "days", "hours", "minutes", "months", "text", "weekdays", "wildcard_hour")

    def __init__(self, text: str) -> None:
        parts = text.split(" ")
        minutes, hours, days, months, weekdays = (
            _parse_field(part, spec, text) for part, spec in zip(parts, FIELDS, strict=True)
        )
        self.text = text
        self.minutes = tuple(sorted(minutes))
        self.hours = tuple(sorted(hours))
        self.days = days
        self.months = tuple(sorted(months))
        self.weekdays = frozenset(day % 7 for day in weekdays)  # 0 = Sunday
        # Vixie cron: OR when both day fields are restricted; a field starting with "*" means AND.
        self.day_or = not parts[2].startswith("*") and not parts[4].startswith("*")
        self.wildcard_hour = parts[1].startswith("*")
        if not self.day_or and min(days) > max(_LONGEST_MONTH[month] for month in months):
            raise CronError(
                f"bad cron expression {text!r}: day-of-month field {parts[2]!r}: never occurs in "
                f"month(s) {parts[3]!r}, so the cron never fires"
            )

    def day_matches(self, day: date) -> bool:
        in_month = day.day in self.days
        in_week = (day.weekday() + 1) % 7 in self.weekdays
        return (in_month or in_week) if self.day_or else (in_month and in_week)

    def next_wall(self, start: datetime) -> datetime | None:
        """The first matching wall-clock minute at or after naive ``start``, or None within 400 years
        (or before the end of year 9999, the last one ``datetime`` holds)."""
        try:
            return self._next_wall(start)
        except (OverflowError, ValueError):  # stepped past 9999-12-31 23:59
            return None

    def _next_wall(self, start: datetime) -> datetime | None:
        if start.second or start.microsecond:
            start = start.replace(second=0, microsecond=0) + _MINUTE
        current = start
        limit = start.year + SEARCH_YEARS
        months, hours, minutes = self.months, self.hours, self.minutes
        while current.year <= limit:
            if current.month not in months:
                index = bisect_right(months, current.month)
                year = current.year + (index == len(months))
                current = datetime(year, months[index % len(months)], 1)
                continue
            if not self.day_matches(current.date()):
                current = datetime.combine(current.date() + timedelta(days=1), datetime.min.time())
                continue
            if current.hour not in hours:
                index = bisect_right(hours, current.hour)
                if index == len(hours):
                    current = datetime.combine(current.date() + timedelta(days=1), datetime.min.time())
                else:
                    current = current.replace(hour=hours[index], minute=minutes[0])
                continue
            if current.minute not in minutes:
                index = bisect_right(minutes, current.minute)
                if index == len(minutes):
                    current = current.replace(minute=0) + timedelta(hours=1)
                    continue
                current = current.replace(minute=minutes[index])
            return current
        return None

    def previous_wall(self, start: datetime) -> datetime | None:
        """The last matching wall-clock minute at or before naive ``start``, or None within 400 years
        (or after the start of year 1)."""
        try:
            return self._previous_wall(start)
        except (OverflowError, ValueError):  # stepped before 0001-01-01 00:00
            return None

    def _previous_wall(self, start: datetime) -> datetime | None:
        current = start.replace(second=0, microsecond=0)
        limit = start.year - SEARCH_YEARS
        months, hours, minutes = self.months, self.hours, self.minutes
        while current.year >= max(limit, 1):
            if current.month not in months:
                index = bisect_left(months, current.month)
                year = current.year - (index == 0)
                month = months[index - 1]
                if year < 1:
                    return None
                last_day = calendar.monthrange(year, month)[1]
                current = datetime(year, month, last_day, 23, 59)
                continue
            if not self.day_matches(current.date()):
                if current.date() == date.min:
                    return None
                current = datetime.combine(current.date() - timedelta(days=1), datetime.max.time())
                current = current.replace(second=0, microsecond=0)
                continue
            if current.hour not in hours:
                index = bisect_left(hours, current.hour)
                if index == 0:
                    current = current.replace(hour=0, minute=0) - _MINUTE
                else:
                    current = current.replace(hour=hours[index - 1], minute=minutes[-1])
                continue
            if current.minute not in minutes:
                index = bisect_left(minutes, current.minute)
                if index == 0:
                    current = current.replace(minute=0) - _MINUTE
                    continue
                current = current.replace(minute=minutes[index - 1])
            return current
        return None


@lru_cache(maxsize=4096)
def _parse_text(text: str) -> CronExpression:
    return CronExpression(text)


def parse(expr: str) -> CronExpression:
    """Parse a crontab expression (or macro); CronError naming the field and token if it is bad."""
    return _parse_text(_expand(expr))


#: Files of the zoneinfo tree that are a host's setting, not a place: every host would read a schedule
#: in its own zone (the web process's preview in one, each ``runcrons`` in another).
HOST_ZONES = frozenset({"localtime", "posixrules"})


def get_zone(name: object) -> ZoneInfo:
    """The IANA zone ``name``; CronError if unknown."""
    if isinstance(name, ZoneInfo):
        return name
    if name in HOST_ZONES:
        raise CronError(
            f"timezone {name!r} is the host's own zone, not a place: use an IANA name such as 'UTC'"
        )
    try:
        if not isinstance(name, str) or not name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise CronError(
            f"unknown timezone {name!r} (use an IANA name such as 'UTC' or 'Europe/Berlin')"
        ) from None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The UTC days whose offsets can be looked up: a day's margin from datetime's ends, for any zone's offset.
_FIRST_DAY = (datetime(1, 1, 2, tzinfo=UTC) - _EPOCH).days
_LAST_DAY = (datetime(9999, 12, 30, tzinfo=UTC) - _EPOCH).days


@lru_cache(maxsize=1 << 16)
def _day_offsets(zone: ZoneInfo, day: int) -> tuple[timedelta, timedelta]:
    """The lowest and highest UTC offsets of ``zone`` over UTC day ``day`` (days since the epoch)."""
    start = _EPOCH + timedelta(days=day)
    hours = range(0, 25, 6)
    offsets = {(start + timedelta(hours=hour)).astimezone(zone).utcoffset() for hour in hours}
    if len(offsets) > 1:  # a change that day: every hour, so no offset in effect for an hour is missed
        offsets = {(start + timedelta(hours=hour)).astimezone(zone).utcoffset() for hour in range(25)}
    known = [offset or timedelta(0) for offset in offsets]
    return min(known), max(known)


@lru_cache(maxsize=1 << 16)
def _window_offsets(zone: ZoneInfo, day: int) -> tuple[timedelta, timedelta]:
    days = [day + delta for delta in (-2, -1, 0, 1, 2)]
    spans = [_day_offsets(zone, near) for near in days if _FIRST_DAY <= near <= _LAST_DAY]
    return min(low for low, _ in spans), max(high for _, high in spans)


def _offset_span(zone: ZoneInfo, moment: datetime) -> tuple[timedelta, timedelta]:
    """The lowest and highest offsets within two days of ``moment`` (covers any real clock jump)."""
    return _window_offsets(zone, int(moment.timestamp() // 86400))


class ZonedCron:
    """A crontab expression in an IANA zone: its ticks as aware UTC datetimes (see the module docstring)."""

    __slots__ = ("cron", "timezone_name", "zone")

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        self.cron = parse(expression)
        self.zone = get_zone(timezone)
        self.timezone_name = self.zone.key if isinstance(timezone, ZoneInfo) else timezone

    @property
    def expression(self) -> str:
        return self.cron.text

    def instants(self, wall: datetime) -> list[datetime]:
        """The UTC ticks for matching wall time ``wall``: none, one, or (repeated hour) two."""
        try:
            first = wall.replace(tzinfo=self.zone).astimezone(UTC)  # fold=0: the offset before a change
            second = wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        except OverflowError:  # a wall time whose instant falls outside years 1-9999
            return []
        if first == second:
            return [first]
        if first < second:  # happens twice (fall back)
            return [first, second] if self.cron.wildcard_hour else [first]
        # Does not exist (spring forward): fold=0 places it after the jump, shifted by the gap.
        return [] if self.cron.wildcard_hour else [first]

    def _local(self, moment: datetime) -> tuple[datetime, timedelta]:
        local = moment.astimezone(self.zone)
        return local.replace(tzinfo=None, fold=0), local.utcoffset() or timedelta(0)

    def next_after(self, moment: datetime) -> datetime | None:
        """The first tick strictly after ``moment`` (aware), as UTC; None if there is none."""
        moment = _aware(moment)
        try:
            return self._next_after(moment.astimezone(UTC))
        except OverflowError:  # within a day of 9999-12-31: no tick there is representable
            return None

    def _next_after(self, moment: datetime) -> datetime | None:
        wall_now, offset = self._local(moment)
        low, _ = _offset_span(self.zone, moment)
        # A wall time before the local "now" can still lie ahead after a clock jump forward
        # (shifted out of a gap) or back (the second pass of a repeated hour): look back that far.
        wall = self.cron.next_wall(wall_now - (offset - low) + _TINY)
        best: datetime | None = None
        horizon: datetime | None = None
        while wall is not None and (horizon is None or wall <= horizon):
            for tick in self.instants(wall):
                if tick > moment and (best is None or tick < best):
                    best = tick
                    # A later wall time maps to an earlier instant only across a jump forward.
                    _, high = _offset_span(self.zone, tick)
                    used = wall - tick.replace(tzinfo=None)
                    reach = wall + max(high - used, timedelta(0))
                    horizon = reach if horizon is None else max(horizon, reach)
            wall = self.cron.next_wall(wall + _MINUTE)
        return best

    def next_at_or_after(self, moment: datetime) -> datetime | None:
        """The first tick at or after ``moment``."""
        moment = _aware(moment)
        return self.next_after(moment - _TINY if moment.replace(tzinfo=None) > datetime.min else moment)

    def latest_at_or_before(self, moment: datetime) -> datetime | None:
        """The last tick at or before ``moment`` (aware), as UTC; None if there is none."""
        moment = _aware(moment)
        try:
            return self._latest_at_or_before(moment.astimezone(UTC))
        except OverflowError:  # within a day of 0001-01-01: no tick there is representable
            return None

    def _latest_at_or_before(self, moment: datetime) -> datetime | None:
        wall_now, offset = self._local(moment)
        _, high = _offset_span(self.zone, moment)
        wall = self.cron.previous_wall(wall_now + (high - offset))
        best: datetime | None = None
        horizon: datetime | None = None
        while wall is not None and (horizon is None or wall >= horizon):
            for tick in self.instants(wall):
                if tick <= moment and (best is None or tick > best):
                    best = tick
                    low, _ = _offset_span(self.zone, tick)
                    used = wall - tick.replace(tzinfo=None)
                    reach = wall - max(used - low, timedelta(0))
                    horizon = reach if horizon is None else min(horizon, reach)
            wall = self.cron.previous_wall(wall - _MINUTE)
        return best

    def previous_before(self, moment: datetime) -> datetime | None:
        """The last tick strictly before ``moment``."""
        moment = _aware(moment)
        if moment.replace(tzinfo=None) == datetime.min:
            return None
        return self.latest_at_or_before(moment - _TINY)


def _aware(moment: datetime) -> datetime:
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise CronError(f"expected a timezone-aware datetime, got {moment!r}")
    return moment


def next_fire_times(
    expr: str, *, timezone: str = "UTC", after: datetime | None = None, count: int = 5
) -> list[datetime]:
    """The next ``count`` ticks of ``expr`` strictly after ``after`` (default: now), in ``timezone``.

    Aware datetimes in the schedule's zone (compare or convert them freely); fewer than ``count``
    when datetime's range ends first (year 9999). CronError on a bad expression, an unknown zone or a
    naive ``after``.
    """
    cron = ZonedCron(expr, timezone)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 10_000:
        raise CronError(f"count must be a whole number 0-10000, got {count!r}")
    moment = datetime.now(UTC) if after is None else _aware(after)
    ticks: list[datetime] = []
    while len(ticks) < count:
        tick = cron.next_after(moment)
        if tick is None:
            break
        ticks.append(tick.astimezone(cron.zone))
        moment = tick
    return ticks
