"""Five-field crontab expressions as APScheduler triggers, with crontab's meaning kept.

APScheduler 3's ``CronTrigger.from_crontab`` is not crontab: it reads weekday ``0`` as Monday
(so ``0 9 * * 1-5`` would fire Tuesday to Saturday) and ANDs a restricted day-of-month with a
restricted day-of-week, where cron ORs them. :class:`CrontabTrigger` translates weekdays to
names, builds the OR from two ``CronTrigger`` objects, and pins down daylight-saving behaviour:

* A wall time that does not exist (spring forward) fires once, shifted forward by the gap, as
  APScheduler computes it: a daily ``30 2 * * *`` in Europe/Berlin fires at 03:30 CEST that day.
* A wall time that happens twice (fall back) fires once, at its first occurrence, unless the hour
  field is a wildcard (``*`` or ``*/n``): an hourly or every-minute cron keeps firing through the
  repeated hour, as Vixie cron does, because it is about elapsed time rather than a wall time.

Every time handed out is timezone-aware UTC. The trigger refuses to be pickled: the job store
keeps its expression and timezone in plain columns and rebuilds it.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from ..exceptions import CronError

NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab numbering: 0 (and 7) is Sunday
#: Ticks walked one by one before the walk jumps to the end of a long gap (a clock jump, a long outage).
SCAN_LIMIT = 5000
_ONE_SECOND = timedelta(seconds=1)


def normalise_expression(expr: str) -> str:
    """Single spaces, nicknames (``@daily``) expanded; CronError unless five fields."""
    if not isinstance(expr, str):
        raise CronError(f"bad cron expression {expr!r}: expected a string")
    text = " ".join(expr.split())
    text = NICKNAMES.get(text.lower(), text)
    if len(text.split(" ")) != 5:
        raise CronError(
            f"bad cron expression {expr!r}: expected five fields 'minute hour day month weekday' "
            f"(or one of {', '.join(NICKNAMES)})"
        )
    return text


def _weekday(token: str, expr: str) -> int:
    low = token.strip().lower()
    if low.isdigit() and 0 <= int(low) <= 7:
        return int(low)
    if low in _CRON_DAYS:
        return _CRON_DAYS.index(low)
    raise CronError(f"bad cron expression {expr!r}: weekday {token!r} is not 0-7 or sun..sat")


def crontab_weekdays(field: str, expr: str = "") -> str:
    """A crontab weekday field (0 or 7 = Sunday, names, ranges, steps) as APScheduler weekday names."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"bad cron expression {expr!r}: bad step in weekday field {part!r}")
            step = int(step_text)
        if base == "*":
            low, high = 0, 6
        elif "-" in base:
            first, _, last = base.partition("-")
            low, high = _weekday(first, expr), _weekday(last, expr)
        else:
            low = _weekday(base, expr)
            high = 7 if slash else low  # "1/2" means "1-7/2", as in cronie
        if low > high:
            raise CronError(f"bad cron expression {expr!r}: weekday range {base!r} runs backwards")
        days.update(day % 7 for day in range(low, high + 1, step))
    # APScheduler names, in its own (Monday-first) order; any order is accepted.
    return ",".join(_CRON_DAYS[day] for day in sorted(days, key=lambda d: (d - 1) % 7))


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise CronError(
            f"unknown timezone {tz!r} (use an IANA name such as 'UTC' or 'Europe/Berlin')"
        ) from None


class CrontabTrigger(BaseTrigger):
    """A crontab expression in a timezone, evaluated with crontab's rules (see the module docstring)."""

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        self.expression = normalise_expression(expression)
        self.timezone_name = timezone
        self.zone = _zone(timezone)
        minute, hour, day, month, weekday = self.expression.split(" ")
        self.wildcard_hour = hour.startswith("*")
        weekdays = crontab_weekdays(weekday, expression)
        try:
            if not day.startswith("*") and not weekday.startswith("*"):
                # Both restricted: cron fires when EITHER matches.
                self._triggers = [
                    CronTrigger(minute=minute, hour=hour, day=day, month=month, timezone=self.zone),
                    CronTrigger(
                        minute=minute, hour=hour, month=month, day_of_week=weekdays, timezone=self.zone
                    ),
                ]
            else:
                self._triggers = [
                    CronTrigger(
                        minute=minute,
                        hour=hour,
                        day=day,
                        month=month,
                        day_of_week=weekdays,
                        timezone=self.zone,
                    )
                ]
        except ValueError as exc:
            raise CronError(f"bad cron expression {expression!r}: {exc}") from None

    # -- pure tick arithmetic (UTC in, UTC out) -----------------------------------------------

    def _aps_next(self, moment: datetime) -> datetime | None:
        found = [t.get_next_fire_time(None, moment) for t in self._triggers]
        times = [f.astimezone(UTC) for f in found if f is not None]
        return min(times) if times else None

    def _spring_forward_within(self, start: datetime, end: datetime) -> datetime | None:
        """The first instant of a clock jump forward in ``(start, end]``, to the second, or None."""
        base = end.astimezone(self.zone).utcoffset()
        if base is None or base <= (start.astimezone(self.zone).utcoffset() or base):
            return None
        low, high = int(start.timestamp()), int(end.timestamp()) + 1  # whole seconds since the epoch
        while high - low > 1:
            middle = (low + high) // 2
            if datetime.fromtimestamp(middle, self.zone).utcoffset() == base:
                high = middle
            else:
                low = middle
        return datetime.fromtimestamp(high, UTC)

    def _raw_at_or_after(self, moment: datetime) -> datetime | None:
        """APScheduler's next fire time at or after ``moment``, made independent of where the search starts.

        APScheduler maps a wall time that does not exist (spring forward) to an instant inside the
        gap only when the search starts before the gap; started inside or just after it, the same
        tick is not found. Searching again from just before a recent jump keeps the tick sequence
        the same however it is queried (a restart must not lose the 03:30 CEST tick).
        """
        candidate = self._aps_next(moment)
        jump = self._spring_forward_within(moment - timedelta(hours=3), moment)
        if jump is not None:
            shifted = self._aps_next(jump - _ONE_SECOND)
            if shifted is not None and shifted >= moment and (candidate is None or shifted < candidate):
                candidate = shifted
        return candidate

    def _repeated_wall_time(self, moment: datetime) -> bool:
        """True for the second occurrence of a wall time that happens twice (fall back)."""
        local = moment.astimezone(self.zone)
        return bool(local.fold) and local.replace(fold=0).astimezone(UTC) != moment

    def next_at_or_after(self, moment: datetime) -> datetime | None:
        """The first tick at or after ``moment``."""
        return self.next_after(moment - timedelta(microseconds=1))

    def next_after(self, moment: datetime) -> datetime | None:
        """The first tick strictly after ``moment`` (UTC), or None if there is none."""
        moment = moment.astimezone(UTC)
        probe = moment + timedelta(microseconds=1)
        for _ in range(10_000):
            candidate = self._raw_at_or_after(probe)
            if candidate is None:
                return None
            if candidate <= moment:  # never go backwards, whatever the trigger says
                probe = max(probe, moment) + _ONE_SECOND
                continue
            if not self.wildcard_hour and self._repeated_wall_time(candidate):
                probe = candidate + _ONE_SECOND
                continue
            return candidate
        raise CronError(f"cron {self.expression!r}: no next tick found after {moment.isoformat()}")

    def latest_at_or_before(self, moment: datetime) -> datetime | None:
        """The last tick at or before ``moment``, found by looking back in growing windows."""
        moment = moment.astimezone(UTC)
        for window in (
            timedelta(hours=1),
            timedelta(days=1),
            timedelta(days=8),
            timedelta(days=32),
            timedelta(days=367),
            timedelta(days=5 * 366),
            timedelta(days=30 * 366),
        ):
            tick = self.next_at_or_after(moment - window)
            if tick is None or tick > moment:
                continue
            while True:
                following = self.next_after(tick)
                if following is None or following > moment:
                    return tick
                tick = following
        return None

    def recent_ticks(self, start: datetime, end: datetime, keep: int) -> TickWindow:
        """The ticks in ``[start, end]``: the most recent ``keep`` of them, and how many there are.

        Walks at most ``SCAN_LIMIT`` ticks from ``start``; past that (a long outage of a frequent
        cron, or a clock jump) it jumps to a window just before ``end`` instead of walking
        hundreds of thousands of ticks, and the total becomes a lower bound.
        """
        recent: deque[datetime] = deque(maxlen=max(keep, 1))
        total = 0
        first: datetime | None = None
        tick = self.next_at_or_after(start)
        while tick is not None and tick <= end:
            first = first or tick
            recent.append(tick)
            total += 1
            if total >= SCAN_LIMIT:
                break
            tick = self.next_after(tick)
        else:
            return TickWindow(list(recent), total, True, first)
        assert first is not None
        walked_to = recent[-1]
        # The walked ticks give the cron's density: look back far enough for about 2 * keep ticks.
        window = max((walked_to - first) * (2 * max(keep, 1)) / SCAN_LIMIT, timedelta(minutes=1))
        while True:
            window_start = max(walked_to, end - window)
            tail: deque[datetime] = deque(maxlen=max(keep, 1))
            counted = 0
            tick = self.next_after(window_start)
            while tick is not None and tick <= end:
                tail.append(tick)
                counted += 1
                tick = self.next_after(tick)
            if counted >= keep or window_start == walked_to:
                merged = (list(recent) + list(tail))[-max(keep, 1) :]
                return TickWindow(merged, total + counted, window_start == walked_to, first)
            window *= 4

    # -- the APScheduler trigger interface ------------------------------------------------------

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        if previous_fire_time is None:
            return self.next_at_or_after(now)
        return self.next_after(previous_fire_time)

    def __getstate__(self) -> Any:
        raise TypeError(
            "CrontabTrigger is never pickled: fusion_jobs stores the expression and timezone in plain "
            "columns and rebuilds the trigger"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CrontabTrigger):
            return NotImplemented
        return (self.expression, self.timezone_name) == (other.expression, other.timezone_name)

    def __hash__(self) -> int:
        return hash((self.expression, self.timezone_name))

    def __str__(self) -> str:
        return f"crontab[{self.expression} {self.timezone_name}]"

    def __repr__(self) -> str:
        return f"<CrontabTrigger {self.expression!r} timezone={self.timezone_name!r}>"


class TickWindow:
    """What :meth:`CrontabTrigger.recent_ticks` found."""

    __slots__ = ("exact", "first", "recent", "total")

    def __init__(self, recent: list[datetime], total: int, exact: bool, first: datetime | None) -> None:
        self.recent = recent  # oldest first
        self.total = total  # exact, or a lower bound when ``exact`` is False
        self.exact = exact
        self.first = first  # the oldest tick in the range
