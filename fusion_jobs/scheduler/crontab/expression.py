"""Five-field crontab expressions: strict parsing, and the matching wall-clock minutes.

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

Standard library only: ``import fusion_jobs`` stays light.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from datetime import date, datetime, timedelta
from functools import lru_cache

from ...exceptions import CronError

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


@lru_cache(maxsize=4096)
def _parse_text(text: str) -> CronExpression:
    return CronExpression(text)


def parse(expr: str) -> CronExpression:
    """Parse a crontab expression (or macro); CronError naming the field and token if it is bad."""
    return _parse_text(_expand(expr))
