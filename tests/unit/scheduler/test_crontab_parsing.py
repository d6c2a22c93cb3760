"""Crontab parsing as Vixie cron (cronie, Debian cron) reads it: pure logic, no database, no broker.

Each example of issue 13 item 2 is here: month steps that were ignored, garbage that was
accepted, valid steps that were refused. Errors name the field and the token.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fusion_jobs.exceptions import CronError
from fusion_jobs.scheduler.crontab import next_fire_times, normalise_expression, parse
from fusion_jobs.scheduler.triggers import CrontabTrigger


def months_fired(expr: str, count: int) -> list[int]:
    """Months of the next ``count`` ticks from New Year 2026, through the trigger runcrons uses."""
    trigger, tick, months = CrontabTrigger(expr), datetime(2025, 12, 31, 23, 59, tzinfo=UTC), []
    for _ in range(count):
        tick = trigger.next_after(tick)
        months.append(tick.month)
    return months


def test_a_month_range_with_a_step_fires_every_other_month():
    assert months_fired("0 0 1 jan-jun/2 *", 4) == [1, 3, 5, 1]  # not Feb, Mar, Apr...


def test_a_month_with_a_step_runs_to_december():
    assert months_fired("0 0 1 May/5 *", 3) == [5, 10, 5]  # "a/s" is "a-max/s"
    assert months_fired("0 0 * May/5 *", 32)[-1] == 10


@pytest.mark.parametrize("expr", ["*/60 * * * *", "* */25 * * *", "1-2/5 * * * *", "4-4/1 * * * *"])
def test_steps_valid_in_vixie_cron_are_accepted(expr):
    CrontabTrigger(expr)


@pytest.mark.parametrize(
    ("expr", "field", "token"),
    [
        ("* * * jan5 *", "month", "jan5"),
        ("* * * feb- *", "month", "feb-"),
        ("* * * jan-feb-mar *", "month", "jan-feb-mar"),
        ("* * * jan/0 *", "month", "jan/0"),
        ("* * lastfoo * *", "day-of-month", "lastfoo"),
        ("60 * * * *", "minute", "60"),
        ("* 24 * * *", "hour", "24"),
        ("* * 0 * *", "day-of-month", "0"),
        ("* * 32 * *", "day-of-month", "32"),
        ("* * * 13 *", "month", "13"),
        ("* * * 0 *", "month", "0"),
        ("* * * * 8", "day-of-week", "8"),
        ("* * * * monday", "day-of-week", "monday"),
        ("1,,2 * * * *", "minute", "1,,2"),
        ("1, * * * *", "minute", "1,"),
        ("5-1 * * * *", "minute", "5-1"),
        ("*/0 * * * *", "minute", "*/0"),
        ("*/ * * * *", "minute", "*/"),
        ("/5 * * * *", "minute", "/5"),
        ("*-5 * * * *", "minute", "*-5"),
        ("-1 * * * *", "minute", "-1"),
        ("* * L * *", "day-of-month", "L"),
        ("* * ? * *", "day-of-month", "?"),
        ("* * * * 5#2", "day-of-week", "5#2"),
        ("* * * * 5L", "day-of-week", "5L"),
        ("\u0663 * * * *", "minute", "\u0663"),  # an Arabic-Indic digit is not a cron number
    ],
)
def test_garbage_is_refused_naming_the_field_and_token(expr, field, token):
    with pytest.raises(CronError) as caught:
        CrontabTrigger(expr)
    message = str(caught.value)
    assert f"{field} field {token!r}" in message, message


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("* * * *", "expected five fields"),
        ("* * * * * *", "expected five fields"),
        ("", "expected five fields"),
        ("@reboot", "unknown macro"),
        ("@every_5m", "unknown macro"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 apr,jun *", "never fires"),
    ],
)
def test_wrong_shapes_are_refused(expr, message):
    with pytest.raises(CronError, match=message):
        parse(expr)


def test_a_bad_type_is_refused():
    with pytest.raises(CronError, match="expected a string"):
        parse(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("expr", "field", "values"),
    [
        ("*/60 * * * *", "minutes", [0]),
        ("* */25 * * *", "hours", [0]),
        ("1-2/5 * * * *", "minutes", [1]),  # a step larger than the range keeps its first value
        ("4-4/1 * * * *", "minutes", [4]),
        ("0-0/1 * * * *", "minutes", [0]),
        ("50/4 * * * *", "minutes", [50, 54, 58]),
        ("* 20/3 * * *", "hours", [20, 23]),
        ("0,30 8-18/5,22 * * *", "hours", [8, 13, 18, 22]),
        ("* * 1-31/10 * *", "days", [1, 11, 21, 31]),
        ("* * * JAN,Mar,dec *", "months", [1, 3, 12]),
        ("* * * */4 *", "months", [1, 5, 9]),
        ("* * * * 0", "weekdays", [0]),
        ("* * * * 7", "weekdays", [0]),  # Sunday is 0 and 7
        ("* * * * 5-7", "weekdays", [0, 5, 6]),
        ("* * * * Sun,SAT", "weekdays", [0, 6]),
        ("* * * * mon-fri", "weekdays", [1, 2, 3, 4, 5]),
        ("* * * * 1/2", "weekdays", [0, 1, 3, 5]),  # 1-7/2: Mon, Wed, Fri, Sun
        ("* * * * */2", "weekdays", [0, 2, 4, 6]),
        ("05 * * * *", "minutes", [5]),
    ],
)
def test_valid_fields(expr, field, values):
    assert sorted(getattr(parse(expr), field)) == values


@pytest.mark.parametrize(
    ("macro", "expr"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@WEEKLY", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ],
)
def test_macros_expand(macro, expr):
    assert normalise_expression(macro) == expr


def test_normalising_keeps_the_text_and_collapses_spaces():
    assert normalise_expression("  0  9\t* *   Mon-Fri ") == "0 9 * * Mon-Fri"


@pytest.mark.parametrize(
    ("expr", "day_or"),
    [
        ("0 0 1 * mon", True),  # both restricted: either matches
        ("0 0 1,15 * 1-5", True),
        ("0 0 * * mon", False),  # a field starting with "*" means AND, as in Vixie cron
        ("0 0 */2 * mon", False),
        ("0 0 1 * */2", False),
        ("0 0 1 * *", False),
    ],
)
def test_day_of_month_and_day_of_week(expr, day_or):
    assert parse(expr).day_or is day_or


def test_the_or_rule_fires_on_either_day():
    # The 1st of the month or any Monday, from Sat 2026-03-28.
    ticks = next_fire_times("0 0 1 * mon", after=datetime(2026, 3, 28, tzinfo=UTC), count=4)
    assert [t.date().isoformat() for t in ticks] == ["2026-03-30", "2026-04-01", "2026-04-06", "2026-04-13"]


def test_a_star_step_day_field_ands_with_the_weekday():
    # Odd days that are also Mondays (Vixie: "*/2" starts with "*", so AND).
    ticks = next_fire_times("0 0 */2 * mon", after=datetime(2026, 3, 1, tzinfo=UTC), count=3)
    assert [t.date().isoformat() for t in ticks] == ["2026-03-09", "2026-03-23", "2026-04-13"]
