"""The agent's crons through the real ``runcrons``: registered once per restart, and the tick really fires."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from example.agent.models import AgentTick
from fusion_jobs.models import CronSchedule, JobRun
from tests.conftest import BROKER_URL, ROOT, wait_for
from tests.example.agent.test_agent_crons import CONTRACT as SIX
from tests.support.processes import environment

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]


def env(db: str) -> dict[str, str]:
    return environment(
        DJANGO_SETTINGS_MODULE="tests.example.settings",
        FUSION_JOBS_TEST_DB=db,
        FUSION_JOBS_WORKER_BROKER_URL=BROKER_URL,
        PYTHONUNBUFFERED="1",
    )


def test_runcrons_twice_registers_the_six_crons_once(test_db_name, worker):
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "manage.py", "runcrons", "--once"],
            cwd=ROOT,
            env=env(test_db_name),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        if _ == 0:
            first = dict(CronSchedule.objects.values_list("name", "next_fire_at"))
    schedules = {s.name: s for s in CronSchedule.objects.filter(name__in=SIX)}
    assert {name: (s.expression, s.task_name) for name, s in schedules.items()} == SIX
    assert {name: s.next_fire_at for name, s in schedules.items()} == {n: first[n] for n in SIX}
    assert "proactive-agent-every-minute" in out.stdout  # start-up lists every schedule


@pytest.mark.slow
def test_the_every_minute_tick_fires_and_is_recorded(test_db_name, worker):
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runcrons"],
        cwd=ROOT,
        env=env(test_db_name),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        run = wait_for(
            lambda: JobRun.objects.filter(
                task_name="proactive-agent-tick",
                cron__name="proactive-agent-every-minute",
                status="succeeded",
            ).first(),
            timeout=100,
            interval=1,
            what="a proactive-agent tick fired by runcrons and run by the worker",
        )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode()
    assert run.scheduled_for is not None and run.mode == "worker"
    assert AgentTick.objects.filter(status="ok").exists()
    assert "guest:guest" not in output
