"""A crontab expression's ticks in an IANA zone, computed in local wall-clock time.

Ticks are found by walking matching wall-clock minutes (naive local datetimes) and only then
placing each one on the time line with :mod:`zoneinfo`. Incrementing in UTC instead (what
APScheduler 3's ``CronTrigger`` does) loses whole days after a spring-forward change. Where the
wall clock is not one-to-one with real time:

* a wall time that does not exist (spring forward) fires once, shifted forward by the gap
  (``30 2 * * *`` in Europe/Berlin fires at 03:30 CEST on 29 March 2026), unless the hour field
  starts with ``*``: such a cron is about elapsed hours, and the real hours still fire;
* a wall time that happens twice (fall back) fires once, at its first occurrence, unless the
  hour field starts with ``*``: then it fires at both, so an hourly cron fires every real hour.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ...exceptions import CronError
from .expression import parse

_MINUTE = timedelta(minutes=1)
_TINY = timedelta(microseconds=1)


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
