"""``ensure_cron``: idempotent upserts, clear errors at the call, orphans, registrars, crontab meaning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

import fusion_jobs
from fusion_jobs.exceptions import CronError, PayloadError, TaskArgumentsError, UnknownTaskError
from fusion_jobs.models import CronSchedule, JobRun
from fusion_jobs.scheduler.declare import MAINTENANCE_REGISTRAR, load_declarations, mark_orphans
from fusion_jobs.scheduler.firing import Publisher, fire_due
from fusion_jobs.scheduler.triggers import CrontabTrigger
from tests.support import cron_registrars
from tests.support.cronsapp import crons as cronsapp

pytestmark = pytest.mark.django_db

#: Declared by every runcrons start unless their settings turn them off (fusion_jobs.tasks).
MAINTENANCE = ("fusion-jobs-prune-runs", "fusion-jobs-rollup", "fusion-jobs-sweep-stuck")


def snapshot() -> list[tuple]:
    return list(
        CronSchedule.objects.order_by("name").values_list(
            "name", "task_name", "expression", "timezone", "input", "misfire", "next_fire_at", "updated_at"
        )
    )


def test_ten_calls_and_ten_restarts_leave_one_unchanged_row(settings):
    first = fusion_jobs.ensure_cron("t-cron-record", "t-cron-nightly", "30 2 * * *", {"label": "n"})
    before = snapshot()
    assert first.next_fire_at is not None and first.next_fire_at > timezone.now()
    for _ in range(10):
        fusion_jobs.ensure_cron("t-cron-record", "t-cron-nightly", "30 2 * * *", {"label": "n"})
    settings.FUSION_JOBS_CRON_REGISTRARS = ["tests.support.cron_registrars.register_two"]
    for _ in range(10):  # what ten runcrons start-ups do
        assert load_declarations().errors == []
    after_restarts = snapshot()
    assert CronSchedule.objects.filter(name="t-cron-nightly").count() == 1
    assert [row for row in after_restarts if row[0] == "t-cron-nightly"] == before
    assert [row[0] for row in after_restarts] == [*MAINTENANCE, "t-cron-a", "t-cron-b", "t-cron-nightly"]


def test_a_missed_next_fire_time_is_kept_by_a_restart():
    fusion_jobs.ensure_cron("t-cron-record", "t-cron-hourly", "0 * * * *", {"label": "h"})
    overdue = timezone.now() - timedelta(hours=3)
    CronSchedule.objects.filter(name="t-cron-hourly").update(next_fire_at=overdue)
    fusion_jobs.ensure_cron("t-cron-record", "t-cron-hourly", "0 * * * *", {"label": "h"})
    # Kept, so the misfire policy decides about the missed ticks instead of a silent reset.
    assert CronSchedule.objects.get(name="t-cron-hourly").next_fire_at == overdue


def test_different_arguments_update_the_row():
    fusion_jobs.ensure_cron("t-cron-record", "t-cron-x", "0 * * * *", {"label": "one"})
    next_fire = CronSchedule.objects.get(name="t-cron-x").next_fire_at
    fusion_jobs.ensure_cron("t-cron-record", "t-cron-x", "0 * * * *", {"label": "two"}, misfire="all")
    row = CronSchedule.objects.get(name="t-cron-x")
    assert (row.input, row.misfire, row.next_fire_at) == ({"label": "two"}, "all", next_fire)
    fusion_jobs.ensure_cron(
        "t-cron-record", "t-cron-x", "30 4 * * *", {"label": "two"}, timezone="Europe/Berlin"
    )
    row = CronSchedule.objects.get(name="t-cron-x")
    assert (row.expression, row.timezone) == ("30 4 * * *", "Europe/Berlin")
    local = row.next_fire_at.astimezone(CrontabTrigger("30 4 * * *", "Europe/Berlin").zone)
    assert (local.hour, local.minute) == (4, 30)
    assert CronSchedule.objects.count() == 1


@pytest.mark.parametrize(
    ("expr", "tz", "message"),
    [
        ("61 * * * *", "UTC", "bad cron expression '61 * * * *'"),
        ("* * *", "UTC", "expected five fields"),
        ("0 0 30 2 *", "UTC", "never fires"),
        ("0 9 * * 8", "UTC", "weekday '8'"),
        ("0 9 * * *", "Mars/Olympus", "unknown timezone 'Mars/Olympus'"),
    ],
)
def test_a_bad_expression_raises_at_the_call(expr, tz, message):
    with pytest.raises(CronError) as caught:
        fusion_jobs.ensure_cron("t-cron-record", "t-cron-bad", expr, {"label": "x"}, timezone=tz)
    assert message in str(caught.value)
    assert not CronSchedule.objects.exists()


def test_a_valid_expression_longer_than_its_column_is_a_cron_error_not_a_database_error():
    every_minute_listed = ",".join(str(minute) for minute in range(60)) + " * * * *"
    assert len(every_minute_listed) > 120  # CronSchedule.expression's max_length
    with pytest.raises(CronError, match="at most 120 characters"):
        fusion_jobs.ensure_cron("t-cron-record", "t-cron-long", every_minute_listed, {"label": "x"})
    assert not CronSchedule.objects.exists()


def test_a_zoneinfo_timezone_is_stored_by_name_and_a_redeclaration_keeps_the_next_fire():
    from zoneinfo import ZoneInfo

    fusion_jobs.ensure_cron(
        "t-cron-record", "t-cron-zone", "0 * * * *", {"label": "z"}, timezone=ZoneInfo("Europe/Berlin")
    )
    overdue = timezone.now() - timedelta(hours=3)
    CronSchedule.objects.filter(name="t-cron-zone").update(next_fire_at=overdue)
    fusion_jobs.ensure_cron(
        "t-cron-record", "t-cron-zone", "0 * * * *", {"label": "z"}, timezone=ZoneInfo("Europe/Berlin")
    )
    row = CronSchedule.objects.get(name="t-cron-zone")
    assert (row.timezone, row.next_fire_at) == ("Europe/Berlin", overdue)


def test_an_unknown_task_raises_at_the_call():
    with pytest.raises(UnknownTaskError, match=r"t-cron-recrod.*did you mean 't-cron-record'"):
        fusion_jobs.ensure_cron("t-cron-recrod", "t-cron-typo", "* * * * *", {"label": "x"})
    assert not CronSchedule.objects.exists()


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (
            {"label": datetime(2026, 1, 1, tzinfo=UTC)},
            PayloadError,
            "kwargs['label'] is not JSON-serialisable",
        ),
        ({"label": {1, 2}}, PayloadError, "not JSON-serialisable"),
        (["label"], PayloadError, "input must be a dict"),
        (
            {"label": "x", "unknown": 1},
            TaskArgumentsError,
            "cron 't-cron-input' (task 't-cron-record'): unexpected argument 'unknown'",
        ),
        ({}, TaskArgumentsError, "missing required argument 'label'"),
    ],
)
def test_bad_input_raises_at_the_call(value, error, message):
    with pytest.raises(error) as caught:
        fusion_jobs.ensure_cron("t-cron-record", "t-cron-input", "* * * * *", value)
    assert message in str(caught.value)
    assert not CronSchedule.objects.exists()


def test_an_admin_pause_survives_redeclaration():
    fusion_jobs.ensure_cron("t-cron-record", "t-cron-p", "* * * * *", {"label": "p"})
    CronSchedule.objects.filter(name="t-cron-p").update(paused=True)
    fusion_jobs.ensure_cron("t-cron-record", "t-cron-p", "*/2 * * * *", {"label": "p"})
    row = CronSchedule.objects.get(name="t-cron-p")
    assert row.paused is True and row.expression == "*/2 * * * *"


def test_schedules_no_longer_declared_are_orphaned_not_deleted(settings, recorder, clock):
    settings.FUSION_JOBS_CRON_REGISTRARS = ["tests.support.cron_registrars.register_two"]
    load_declarations()
    settings.FUSION_JOBS_CRON_REGISTRARS = ["tests.support.cron_registrars.register_only_a"]
    load_declarations()
    assert mark_orphans({"t-cron-a", *MAINTENANCE}) == ["t-cron-b"]
    b = CronSchedule.objects.get(name="t-cron-b")
    assert b.orphaned and not b.active
    # An orphan does not fire, even when long overdue.
    CronSchedule.objects.filter(name__startswith="t-cron-").update(next_fire_at=clock())  # 12:00, both tick
    clock.advance(seconds=30)
    fired = fire_due(clock=clock, publisher=Publisher(recorder))
    assert [r.name for r in fired if r.fired] == ["t-cron-a"]
    assert not JobRun.objects.filter(cron=b).exists()
    # Declared again: it comes back, from its next tick (the orphaned time is not caught up).
    fusion_jobs.ensure_cron("t-cron-record", "t-cron-b", "0 * * * *", {"label": "b"})
    b.refresh_from_db()
    assert not b.orphaned and b.next_fire_at > timezone.now()


def test_a_failing_registrar_is_reported_and_blocks_orphan_marking(settings):
    settings.FUSION_JOBS_CRON_REGISTRARS = [
        "tests.support.cron_registrars.register_broken",
        "tests.support.cron_registrars.register_only_a",
        "tests.support.cron_registrars.no_such_function",
    ]
    result = load_declarations()
    assert result.sources == [MAINTENANCE_REGISTRAR, "tests.support.cron_registrars.register_only_a"]
    assert len(result.errors) == 2
    assert "register_broken: CronError: bad cron expression '61 * * * *'" in result.errors[0]
    assert "no_such_function" in result.errors[1]
    assert list(CronSchedule.objects.values_list("name", flat=True)) == [*MAINTENANCE, "t-cron-a"]


DISCOVERED = "tests.support.cronsapp.crons.register_crons"


def test_an_apps_crons_register_crons_is_autodiscovered_once_even_when_also_listed(settings):
    cronsapp.calls.clear()
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "tests.support.cronsapp"]
    settings.FUSION_JOBS_CRON_REGISTRARS = [DISCOVERED]
    result = load_declarations()
    assert result.errors == []
    assert result.sources == [MAINTENANCE_REGISTRAR, DISCOVERED]
    assert cronsapp.calls == ["discovered"]
    settings.FUSION_JOBS_CRON_REGISTRARS = []
    assert load_declarations().sources == [MAINTENANCE_REGISTRAR, DISCOVERED]
    assert list(CronSchedule.objects.values_list("name", flat=True)) == [*MAINTENANCE, "t-cron-discovered"]


def test_crons_autodiscovery_can_be_turned_off(settings):
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "tests.support.cronsapp"]
    settings.FUSION_JOBS_CRON_AUTODISCOVER = False
    assert load_declarations().sources == [MAINTENANCE_REGISTRAR]
    assert not CronSchedule.objects.filter(name="t-cron-discovered").exists()


def test_a_registrar_listed_twice_runs_once(settings):
    cron_registrars.calls.clear()
    settings.FUSION_JOBS_CRON_REGISTRARS = [
        "tests.support.cron_registrars.register_only_a",
        "tests.support.cron_registrars.register_only_a",
    ]
    result = load_declarations()
    assert result.errors == []
    assert result.sources == [MAINTENANCE_REGISTRAR, "tests.support.cron_registrars.register_only_a"]
    assert cron_registrars.calls == ["only-a"]
    assert list(CronSchedule.objects.values_list("name", flat=True)) == [*MAINTENANCE, "t-cron-a"]


def test_settings_registrars_are_called_in_order(settings):
    cron_registrars.calls.clear()
    settings.FUSION_JOBS_CRON_REGISTRARS = [
        "tests.support.cron_registrars.register_only_a",
        "tests.support.cron_registrars.register_two",
    ]
    load_declarations()
    assert cron_registrars.calls == ["only-a", "two"]


def _weekdays(expr: str, days: int = 14) -> list[str]:
    trigger = CrontabTrigger(expr)
    moment = datetime(2026, 6, 1, tzinfo=UTC)  # a Monday
    found = []
    while (tick := trigger.next_after(moment)) is not None and tick < datetime(
        2026, 6, 1, tzinfo=UTC
    ) + timedelta(days=days):
        found.append(tick.strftime("%a %d"))
        moment = tick
    return found


def test_expressions_keep_crontab_meaning():
    # APScheduler 3's from_crontab reads weekday 0 as Monday; crontab reads it as Sunday.
    assert _weekdays("0 9 * * 1-5", 7) == ["Mon 01", "Tue 02", "Wed 03", "Thu 04", "Fri 05"]
    assert _weekdays("0 0 * * 0", 14) == _weekdays("0 0 * * 7", 14) == ["Sun 07", "Sun 14"]
    assert _weekdays("0 0 * * sat,sun", 7) == ["Sat 06", "Sun 07"]
    assert _weekdays("0 0 * * */2", 7) == ["Tue 02", "Thu 04", "Sat 06", "Sun 07"]
    # A restricted day-of-month and day-of-week: either matches (cron's OR).
    assert _weekdays("0 0 13 * 5", 20) == ["Fri 05", "Fri 12", "Sat 13", "Fri 19"]
    assert CrontabTrigger("@hourly").expression == "0 * * * *"
    row = fusion_jobs.ensure_cron("t-cron-record", "t-cron-daily", " @daily ", {"label": "d"})
    assert row.expression == "0 0 * * *"
