"""Schedules created at runtime (kept until deleted) next to declared ones (orphaned when undeclared),
and the maintenance crons ``runcrons`` declares by default."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

import fusion_jobs
from fusion_jobs import tasks as maintenance
from fusion_jobs.exceptions import CronError
from fusion_jobs.models import CronSchedule, JobRun
from fusion_jobs.scheduler.declare import declared_names, load_declarations, mark_orphans

pytestmark = pytest.mark.django_db


@pytest.fixture
def only_a(settings: Any) -> None:
    settings.FUSION_JOBS_CRON_REGISTRARS = ["tests.support.cron_registrars.register_only_a"]


def origins() -> dict[str, tuple[str, bool]]:
    return {row.name: (row.origin, row.orphaned) for row in CronSchedule.objects.all()}


def test_a_runtime_schedule_is_not_orphaned_by_a_start_that_does_not_declare_it(only_a):
    fusion_jobs.ensure_cron("t-cron-record", "t-cron-runtime", "*/10 * * * *", {"label": "r"})
    assert load_declarations().errors == []
    # What a runcrons start does; before origins existed every undeclared name was orphaned.
    assert "t-cron-runtime" not in mark_orphans({"t-cron-a"})
    assert origins()["t-cron-runtime"] == ("runtime", False)
    assert origins()["t-cron-a"] == ("declared", False)
    assert CronSchedule.objects.get(name="t-cron-runtime").active


def test_only_registrar_calls_are_declarations(only_a):
    fusion_jobs.ensure_cron("t-cron-record", "t-cron-runtime", "*/10 * * * *", {"label": "r"})
    load_declarations()
    assert "t-cron-a" in declared_names() and "t-cron-runtime" not in declared_names()


def test_the_origin_follows_who_owns_the_name(only_a):
    load_declarations()
    # A runtime call on a declared name updates it; the code still owns it.
    fusion_jobs.ensure_cron("t-cron-record", "t-cron-a", "*/5 * * * *", {"label": "changed"})
    assert origins()["t-cron-a"] == ("declared", False)
    # A registrar taking over a runtime name makes it declared.
    fusion_jobs.ensure_cron("t-cron-record", "t-cron-b", "0 * * * *", {"label": "b"})
    assert origins()["t-cron-b"] == ("runtime", False)
    from django.test import override_settings

    with override_settings(FUSION_JOBS_CRON_REGISTRARS=["tests.support.cron_registrars.register_two"]):
        load_declarations()
    assert origins()["t-cron-b"] == ("declared", False)
    # Undeclared, it is orphaned; a runtime call then brings it back as a runtime schedule.
    assert "t-cron-b" in mark_orphans({"t-cron-a"})
    fusion_jobs.ensure_cron("t-cron-record", "t-cron-b", "0 * * * *", {"label": "b"})
    assert origins()["t-cron-b"] == ("runtime", False)


def test_a_runtime_ensure_cron_is_idempotent():
    fusion_jobs.ensure_cron("t-cron-record", "t-cron-runtime", "*/10 * * * *", {"label": "r"})
    before = CronSchedule.objects.values().get(name="t-cron-runtime")
    for _ in range(3):
        fusion_jobs.ensure_cron("t-cron-record", "t-cron-runtime", "*/10 * * * *", {"label": "r"})
    assert CronSchedule.objects.values().get(name="t-cron-runtime") == before


def test_delete_cron_removes_a_runtime_schedule_and_keeps_its_history(only_a):
    row = fusion_jobs.ensure_cron("t-cron-record", "t-cron-runtime", "*/10 * * * *", {"label": "r"})
    run = JobRun.objects.create(task_name="t-cron-record", cron=row, scheduled_for=timezone.now())
    assert fusion_jobs.delete_cron("t-cron-runtime") is True
    assert not CronSchedule.objects.filter(name="t-cron-runtime").exists()
    run.refresh_from_db()
    assert run.cron_id is None  # the run stays in the history
    assert fusion_jobs.delete_cron("t-cron-runtime") is False  # twice is fine


def test_delete_cron_refuses_a_declared_schedule_until_it_is_orphaned(only_a):
    load_declarations()
    with pytest.raises(CronError, match="'t-cron-a' is declared in code by a registrar"):
        fusion_jobs.delete_cron("t-cron-a")
    assert CronSchedule.objects.filter(name="t-cron-a").exists()
    mark_orphans(set())
    assert fusion_jobs.delete_cron("t-cron-a") is True


# --- Maintenance -------------------------------------------------------------------------------


def test_runcrons_declares_the_maintenance_crons_by_default(settings):
    settings.FUSION_JOBS_CRON_REGISTRARS = []
    result = load_declarations()
    assert result.errors == [] and result.sources == ["fusion_jobs.tasks.register_maintenance_crons"]
    rows = {
        row.name: (row.task_name, row.expression, row.origin, row.active)
        for row in CronSchedule.objects.all()
    }
    assert rows == {
        "fusion-jobs-prune-runs": ("fusion-jobs-prune-runs", "17 3 * * *", "declared", True),
        "fusion-jobs-sweep-stuck": ("fusion-jobs-sweep-stuck", "*/5 * * * *", "declared", True),
        "fusion-jobs-rollup": ("fusion-jobs-rollup", "*/5 * * * *", "declared", True),
    }


def test_settings_change_the_maintenance_expressions_or_turn_them_off(settings):
    settings.FUSION_JOBS_CRON_REGISTRARS = []
    load_declarations()
    settings.FUSION_JOBS_CRON_PRUNE_RUNS = "0 4 * * 0"
    settings.FUSION_JOBS_CRON_SWEEP_STUCK = ""
    assert load_declarations().errors == []
    assert mark_orphans({"fusion-jobs-prune-runs", "fusion-jobs-rollup"}) == ["fusion-jobs-sweep-stuck"]
    prune = CronSchedule.objects.get(name="fusion-jobs-prune-runs")
    assert (prune.expression, prune.active) == ("0 4 * * 0", True)
    assert CronSchedule.objects.get(name="fusion-jobs-sweep-stuck").active is False


def test_a_bad_maintenance_expression_is_reported_by_name(settings):
    settings.FUSION_JOBS_CRON_REGISTRARS = []
    settings.FUSION_JOBS_CRON_SWEEP_STUCK = "*/5 * * *"
    [error] = load_declarations().errors
    assert error.startswith("fusion_jobs.tasks.register_maintenance_crons: CronError:")


def test_the_sweep_fails_an_inline_run_left_running_by_a_killed_web_process(settings):
    settings.FUSION_JOBS_STUCK_GRACE_SECONDS = 60
    long_ago = timezone.now() - timedelta(hours=1)
    recent = timezone.now() - timedelta(seconds=30)
    killed = JobRun.objects.create(
        task_name="t-cron-record",
        mode="inline",
        status="running",
        attempts=1,
        execution_timeout=600,
        started_at=long_ago,
        heartbeat_at=long_ago,
    )
    alive = JobRun.objects.create(  # reported progress 30 s ago: still running somewhere
        task_name="t-cron-record",
        mode="inline",
        status="running",
        attempts=1,
        execution_timeout=600,
        started_at=long_ago,
        heartbeat_at=recent,
    )
    seen: list[int] = []

    def receiver(sender: Any, marked: int, **kwargs: Any) -> None:
        seen.append(marked)

    maintenance.stuck_runs_swept.connect(receiver)
    try:
        assert maintenance.sweep_stuck() == {"marked": 1}
    finally:
        maintenance.stuck_runs_swept.disconnect(receiver)
    killed.refresh_from_db()
    alive.refresh_from_db()
    assert (killed.status, alive.status) == ("failed", "running")
    assert killed.error.startswith("WorkerLost: no sign of life for 3600 s")
    assert seen == [1]
