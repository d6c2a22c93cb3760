"""``manage.py runcrons`` as real processes: the gate, ``--once``, and three schedulers with a leader killed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import transaction
from django.utils import timezone

import fusion_jobs
from fusion_jobs.models import CronSchedule, JobRun, WorkerLease
from tests.conftest import BROKER_URL, ROOT, wait_for
from tests.support.processes import environment, kill_group, stop_group
from tests.testapp.models import Marker

CRON = "t-cron-every-minute"  # declared by tests.support.cron_registrars.register_every_minute


def clean_env(**extra: str) -> dict[str, str]:
    return environment(DJANGO_SETTINGS_MODULE="tests.support.cron_settings", PYTHONUNBUFFERED="1", **extra)


def runcrons(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "runcrons", *args],
        cwd=ROOT,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_a_broker_it_prints_one_line_and_exits_0():
    out = runcrons()
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines() == [
        "fusion-jobs: background jobs are disabled (FUSION_JOBS_BROKER_URL is not set); no crons fire."
    ]


def test_in_eager_mode_it_says_so_and_exits_0():
    out = runcrons(FUSION_JOBS_WORKER_BROKER_URL=BROKER_URL, FUSION_JOBS_EAGER="1")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip().splitlines()) == 1 and "FUSION_JOBS_EAGER is on" in out.stdout


YEARLY = "t-cron-yearly"  # a runtime schedule the tests create, never declared by a registrar


def schedule_lines(output: str) -> dict[str, str]:
    """The start-up's schedule lines, by schedule name."""
    return {
        line.split(":")[0].strip(): line
        for line in output.splitlines()
        if line.startswith("  ") and ": '" in line
    }


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_once_prints_its_configuration_fires_what_is_due_and_exits(test_db_name, worker):
    # A runtime schedule created before runcrons starts, one tick a year: exactly one tick is due
    # however long the subprocess takes to start. (This test used an every-minute cron: a start
    # that crossed a minute boundary found two due ticks, fired the later one and skipped the
    # other, printing "skipped 1".) Every declared cron is yearly or off, so none is due either.
    fusion_jobs.ensure_cron("t-cron-record", YEARLY, "0 0 1 1 *", {"label": "yearly"})
    tick = timezone.now().replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    CronSchedule.objects.filter(name=YEARLY).update(next_fire_at=tick)
    env = {
        "FUSION_JOBS_TEST_DB": test_db_name,
        "FUSION_JOBS_WORKER_BROKER_URL": BROKER_URL,
        "T_CRON_REGISTRARS": "tests.support.cron_registrars.register_yearly",
        "FUSION_JOBS_CRON_PRUNE_RUNS": "0 0 1 1 *",
        "FUSION_JOBS_CRON_SWEEP_STUCK": "",  # off
        "FUSION_JOBS_CRON_ROLLUP": "",  # off (every five minutes: a start could cross a due tick)
    }
    out = runcrons("--once", "--poll-interval", "2", **env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("fusion-jobs crons: broker=amqp://guest:***@127.0.0.1:5672/")
    assert "mode=once lease=runcrons (holder " in lines[0] and "poll=2 s" in lines[0]
    assert (
        "registrars=fusion_jobs.tasks.register_maintenance_crons, "
        "tests.support.cron_registrars.register_yearly" in lines[0]
    )
    shown = schedule_lines(out.stdout)
    assert sorted(shown) == ["fusion-jobs-prune-runs", "t-cron-new-year", YEARLY]  # sweep, rollup off
    assert re.match(
        rf"  {YEARLY}: '0 0 1 1 \*' UTC -> t-cron-record \[active\] runtime misfire=latest next=",
        shown[YEARLY],
    )
    assert (
        "[active] declared" in shown["t-cron-new-year"] and "'0 0 1 1 *'" in shown["fusion-jobs-prune-runs"]
    )
    assert "fired 1 tick(s), skipped 0, 1 published, 0 left for retry" in lines[-1]
    assert "guest:guest" not in out.stdout + out.stderr
    [run] = JobRun.objects.filter(cron__name=YEARLY)
    assert run.scheduled_for == tick and run.published_at is not None
    assert wait_for(lambda: JobRun.objects.get(pk=run.pk).status == "succeeded", timeout=30)

    # A restart keeps the runtime schedule (it used to be orphaned here) and orphans the
    # maintenance cron its setting now turns off.
    again = runcrons("--once", **{**env, "FUSION_JOBS_CRON_PRUNE_RUNS": ""})
    assert again.returncode == 0, again.stderr
    shown = schedule_lines(again.stdout)
    assert "[active] runtime" in shown[YEARLY]
    assert "[orphaned (no longer declared; not firing)] declared" in shown["fusion-jobs-prune-runs"]
    assert "  newly orphaned: fusion-jobs-prune-runs" in again.stdout.splitlines()
    assert "fired 0 tick(s), skipped 0" in again.stdout.splitlines()[-1]
    row = CronSchedule.objects.get(name=YEARLY)
    assert (row.origin, row.orphaned, row.next_fire_at) == (
        "runtime",
        False,
        tick.replace(year=tick.year + 1),
    )


class CronProcess:
    def __init__(self, db_name: str, index: int, **env: str) -> None:
        self.env = env
        self.log_path = Path(
            f"/tmp/fusion-jobs-test-runcrons-{os.getpid()}-{index}-{time.monotonic_ns()}.log"
        )
        self.db_name = db_name
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> CronProcess:
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "runcrons"],
            cwd=ROOT,
            env=clean_env(
                FUSION_JOBS_TEST_DB=self.db_name, FUSION_JOBS_WORKER_BROKER_URL=BROKER_URL, **self.env
            ),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        assert self.proc is not None
        kill_group(self.proc)

    def stop(self) -> int | None:
        assert self.proc is not None
        code = stop_group(self.proc)
        self.log.close()
        return code


def cron_runs() -> list[JobRun]:
    return list(JobRun.objects.filter(cron__name=CRON).order_by("scheduled_for"))


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_three_schedulers_fire_each_tick_once_and_survive_the_leader_being_killed(test_db_name, worker):
    processes = [CronProcess(test_db_name, i).start() for i in range(3)]
    try:
        for process in processes:
            wait_for(
                lambda p=process: "fusion-jobs crons: broker=" in p.output(), timeout=30, what="start-up"
            )
            assert "guest:guest" not in process.output()
        lease = wait_for(
            lambda: WorkerLease.objects.filter(name="runcrons").first(), timeout=30, what="a leader"
        )
        first_leader = next(p for p in processes if lease.holder.split(":")[1] == str(p.pid))
        first = wait_for(lambda: cron_runs(), timeout=75, what="the first tick")[0]
        assert first.enqueued_by == f"cron {CRON} via {lease.holder}"
        first_leader.kill()  # SIGKILL: no lease release, no goodbye
        second_tick = first.scheduled_for + timedelta(minutes=1)
        wait = (second_tick - timezone.now()).total_seconds() + 30
        runs = wait_for(lambda: len(cron_runs()) >= 2 and cron_runs(), timeout=wait, what="the second tick")
        new_holder = WorkerLease.objects.get(name="runcrons").holder
        assert new_holder != lease.holder
        time.sleep(2)  # a double fire would show up now
    finally:
        codes = [p.stop() for p in processes]
    survivors = [p for p in processes if p is not first_leader]
    assert [codes[processes.index(p)] for p in survivors] == [0, 0]
    assert all("fusion-jobs crons: stopped" in p.output() for p in survivors)

    runs = cron_runs()
    ticks = [r.scheduled_for for r in runs]
    assert ticks[:2] == [first.scheduled_for, second_tick]
    assert len(ticks) == len(set(ticks))  # at most one run per tick (the database guarantees it)...
    fired_lines = Counter(
        match.group(1)
        for p in processes
        for match in re.finditer(rf"cron {CRON} fired tick (\S+) ", p.output())
    )
    assert all(count == 1 for count in fired_lines.values()), fired_lines  # ...and one process fired each
    assert set(fired_lines) == {t.isoformat() for t in ticks}
    assert runs[1].enqueued_by == f"cron {CRON} via {new_holder}"
    assert not JobRun.objects.filter(cron__name=CRON, status="skipped").exists()
    finished = wait_for(
        lambda: all(JobRun.objects.get(pk=r.pk).status == "succeeded" for r in runs), timeout=30, what="runs"
    )
    assert finished
    executed = list(Marker.objects.filter(label="every-minute").values_list("value__run", flat=True))
    assert sorted(executed) == sorted(str(r.pk) for r in runs)  # each tick ran exactly once


RUNTIME = "t-cron-runtime"


def runtime_runs() -> list[JobRun]:
    # By who enqueued them: a deleted schedule's runs lose their link to it, not this.
    return list(JobRun.objects.filter(enqueued_by__startswith=f"cron {RUNTIME} via").order_by("enqueued_at"))


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_a_running_runcrons_picks_up_runtime_schedules_within_a_few_polls(test_db_name, worker):
    """Created, changed, paused, resumed and deleted while runcrons runs (poll 1 s): no restart.

    Each step makes the schedule due at a tick no earlier step claimed (``misfire=all`` fires it),
    so a process that kept a stale view would fire, or fail to fire, where the row says otherwise.
    """
    process = CronProcess(test_db_name, 0).start()
    minute = timezone.now().replace(second=0, microsecond=0)
    step = iter(range(2, 60))

    def make_due() -> None:
        CronSchedule.objects.filter(name=RUNTIME).update(next_fire_at=minute - timedelta(minutes=next(step)))

    def picked_up(count: int, what: str) -> list[JobRun]:
        started = time.monotonic()
        wait_for(lambda: len(runtime_runs()) >= count, timeout=20, what=what)
        latencies.append(time.monotonic() - started)
        # The round is over once the row has moved on to a future tick.
        wait_for(
            lambda: CronSchedule.objects.get(name=RUNTIME).next_fire_at > timezone.now(),
            timeout=20,
            what="the round to end",
        )
        return runtime_runs()

    def nothing_fires(count: int) -> None:
        time.sleep(4)  # four polls
        assert len(runtime_runs()) == count

    latencies: list[float] = []
    try:
        wait_for(lambda: "fusion-jobs crons: broker=" in process.output(), timeout=30, what="start-up")
        shown = schedule_lines(process.output())
        # The maintenance crons are there by default, declared, next to the test's registrar's.
        assert sorted(shown) == [
            "fusion-jobs-prune-runs",
            "fusion-jobs-rollup",
            "fusion-jobs-sweep-stuck",
            CRON,
        ]
        assert (
            "'17 3 * * *' UTC -> fusion-jobs-prune-runs [active] declared" in shown["fusion-jobs-prune-runs"]
        )
        assert (
            "'*/5 * * * *' UTC -> fusion-jobs-sweep-stuck [active] declared"
            in shown["fusion-jobs-sweep-stuck"]
        )
        wait_for(lambda: WorkerLease.objects.filter(name="runcrons").exists(), timeout=30, what="a leader")

        fusion_jobs.ensure_cron("t-cron-record", RUNTIME, "* * * * *", {"label": "created"}, misfire="all")
        make_due()
        runs = picked_up(1, "a schedule created at runtime to fire")
        assert runs[-1].kwargs == {"label": "created"}

        fusion_jobs.ensure_cron("t-cron-record", RUNTIME, "* * * * *", {"label": "changed"}, misfire="all")
        count = len(runtime_runs())
        make_due()
        runs = picked_up(count + 1, "the changed input")
        assert runs[-1].kwargs == {"label": "changed"}

        CronSchedule.objects.filter(name=RUNTIME).update(paused=True, updated_at=timezone.now())
        count = len(runtime_runs())
        make_due()
        nothing_fires(count)

        CronSchedule.objects.filter(name=RUNTIME).update(paused=False, updated_at=timezone.now())
        make_due()
        picked_up(count + 1, "the resumed schedule")

        count = len(runtime_runs())
        with transaction.atomic():
            make_due()
            assert fusion_jobs.delete_cron(RUNTIME) is True
        nothing_fires(count)
        assert "schedules changed" in process.output()
    finally:
        code = process.stop()
    assert code == 0, process.output()
    print(f"pick-up latencies (s): {', '.join(f'{t:.1f}' for t in latencies)}")
    assert len(latencies) == 3
