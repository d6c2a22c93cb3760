"""The six crons: the contract's names, expressions and tasks, registered idempotently."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.utils.module_loading import import_string

from example.agent import crons
from fusion_jobs.models import CronSchedule
from fusion_jobs.registry import get_task

pytestmark = pytest.mark.django_db

CONTRACT = {
    "proactive-agent-every-minute": ("* * * * *", "proactive-agent-tick"),
    "agent-delivery-retry-every-minute": ("* * * * *", "agent-delivery-retry-tick"),
    "agent-retention-daily": ("0 3 * * *", "agent-retention-tick"),
    "agent-embedding-backfill": ("*/5 * * * *", "agent-embedding-backfill-tick"),
    "agent-memory-consolidation-daily": ("30 3 * * *", "agent-memory-consolidation-tick"),
    "agent-digest-briefing": ("30 7 * * *", "agent-digest-tick"),
}


def schedules() -> dict[str, tuple[str, str, Any]]:
    return {s.name: (s.expression, s.task_name, s.next_fire_at) for s in CronSchedule.objects.all()}


def test_registering_twice_gives_exactly_the_six_schedules_unchanged() -> None:
    crons.register_agent_cron()
    first = schedules()
    updated = {s.name: s.updated_at for s in CronSchedule.objects.all()}

    crons.register_agent_cron()

    assert {name: (expr, task) for name, (expr, task, _) in first.items()} == CONTRACT
    assert schedules() == first  # next fire times included
    assert {s.name: s.updated_at for s in CronSchedule.objects.all()} == updated
    assert all(next_fire is not None for _, _, next_fire in first.values())


def test_the_tasks_exist_and_guard_against_overlap() -> None:
    for name, (_, task_name) in CONTRACT.items():
        task = get_task(task_name)
        assert task.single_flight is True, name


def test_runcrons_finds_the_registrar_in_the_settings() -> None:
    assert settings.FUSION_JOBS_CRON_REGISTRARS == ["example.agent.crons.register_agent_cron"]
    assert import_string(settings.FUSION_JOBS_CRON_REGISTRARS[0]) is crons.register_agent_cron
