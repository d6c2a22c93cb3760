"""The APScheduler adapter for crontab expressions: :class:`CrontabTrigger`.

The tick arithmetic lives in :mod:`.crontab` (parsing as Vixie cron, ticks found on the local
wall clock, then placed with zoneinfo), which also states the daylight-saving rules. APScheduler 3's
own ``CronTrigger`` is not used: it reads weekday ``0`` as Monday, ANDs day-of-month with
day-of-week, ignores month steps, and increments fields in UTC, which loses whole days, months or
years after a spring-forward change (APScheduler issues 529 and 606).

Every time handed out is timezone-aware UTC. The trigger refuses to be pickled: the job store
keeps its expression and timezone in plain columns and rebuilds it.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta
from typing import Any

from apscheduler.triggers.base import BaseTrigger

from .crontab import ZonedCron

__all__ = ["SCAN_LIMIT", "CrontabTrigger", "TickWindow"]

#: Ticks walked one by one before the walk jumps to the end of a long gap (a clock jump, a long outage).
SCAN_LIMIT = 5000


class CrontabTrigger(BaseTrigger):
    """A crontab expression in a timezone, evaluated with crontab's rules (see :mod:`.crontab`)."""

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        self._cron = ZonedCron(expression, timezone)
        self.expression = self._cron.expression
        self.timezone_name = self._cron.timezone_name
        self.zone = self._cron.zone
        self.wildcard_hour = self._cron.cron.wildcard_hour

    # -- pure tick arithmetic (UTC in, UTC out) -----------------------------------------------

    def next_after(self, moment: datetime) -> datetime | None:
        """The first tick strictly after ``moment`` (UTC), or None if there is none."""
        return self._cron.next_after(moment)

    def next_at_or_after(self, moment: datetime) -> datetime | None:
        """The first tick at or after ``moment``."""
        return self._cron.next_at_or_after(moment)

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
