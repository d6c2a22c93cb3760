"""Schema changes and reloads: ``rundramatiq`` and ``runcrons`` notice migrations applied after they
started and replace their processes gracefully (running tasks finish on the old process, new runs
start on a fresh one); ``rundramatiq --reload`` does the same when a loaded source file changes.

Real ``rundramatiq``/``runcrons`` subprocesses on the real RabbitMQ and PostgreSQL; the migration
is a real ``migrate`` of the test app ``tests.opsapp`` (0002 adds the ``colour`` column).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

import fusion_jobs
from fusion_jobs.models import JobRun, WorkerHeartbeat
from tests.conftest import BROKER_URL, ROOT, purge_queues, wait_for
from tests.support.processes import alive, stop_group

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]

BEAT = "0.5"
MIGRATED = "migrations changed since start"
#: An idle thread of a draining process still waits up to Dramatiq's worker timeout (1 s) for a
#: message and runs what it gets (README: the window after migrate); past it, runs go to the new one.
OLD_THREADS_IDLE_WAIT = 1.5


class Command:
    """A ``manage.py`` long-running command with its output in a file."""

    def __init__(self, db: str, *argv: str, env: dict[str, str] | None = None) -> None:
        self.log_path = Path(f"/tmp/fusion-jobs-test-reload-{os.getpid()}-{time.monotonic_ns()}.log")
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", *argv],
            cwd=ROOT,
            env={
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "tests.settings",
                "FUSION_JOBS_TEST_DB": db,
                "FUSION_JOBS_WORKER_BROKER_URL": BROKER_URL,
                "FUSION_JOBS_WORKER_HEARTBEAT": BEAT,
                "PYTHONUNBUFFERED": "1",
                **(env or {}),
            },
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ready(self, count: int) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"exited with {self.proc.returncode}:\n{self.output()}")
        return self.output().count("Worker process is ready for action") >= count

    def stop(self) -> None:
        stop_group(self.proc, timeout=30)
        self.log.close()


def finished(handle: Any) -> JobRun | None:
    run = JobRun.objects.get(pk=handle.run_id)
    return run if run.status in ("succeeded", "failed") else None


@pytest.fixture
def before_colour() -> Iterator[None]:
    """The test app migrated back to 0001 (no ``colour`` column), and fully migrated again after."""
    call_command("migrate", "fj_opsapp", "0001", verbosity=0)
    yield
    call_command("migrate", "fj_opsapp", verbosity=0)


def test_a_run_enqueued_after_migrate_sees_the_new_column(
    test_db_name: str, broker_settings: str, before_colour: None
) -> None:
    purge_queues(queues=("fj-ops",))
    worker = Command(test_db_name, "rundramatiq", "-p", "1", "-t", "2", "--queues", "fj-ops")
    try:
        wait_for(lambda: worker.ready(1), timeout=60, what="the worker")
        handle = fusion_jobs.enqueue("ops-gadget-columns")
        first = wait_for(lambda: finished(handle), timeout=30, what="a first run")
        assert first.status == "succeeded" and "colour" not in first.result["columns"]
        old_pid = first.result["pid"]

        in_flight = fusion_jobs.enqueue("ops-gadget-columns", sleep=4)
        wait_for(lambda: JobRun.objects.get(pk=in_flight.run_id).status == "running", what="the long run")
        call_command("migrate", "fj_opsapp", verbosity=0)  # adds gadget.colour

        wait_for(lambda: MIGRATED in worker.output(), timeout=30, what="the reload line")
        wait_for(lambda: worker.ready(2), timeout=60, what="the replacement process")
        time.sleep(OLD_THREADS_IDLE_WAIT)
        after = fusion_jobs.enqueue("ops-gadget-columns")
        run = wait_for(lambda: finished(after), timeout=30, what="the run after migrate")

        assert run.status == "succeeded" and "colour" in run.result["columns"]
        assert run.result["pid"] != old_pid
        # The run in flight during the migration finished on the old process, not lost or retried.
        old = wait_for(lambda: finished(in_flight), timeout=30, what="the in-flight run")
        assert old.status == "succeeded" and old.result["pid"] == old_pid and old.attempts == 1
        assert worker.output().count(MIGRATED) == 1  # one line for one migrate
        assert worker.proc.poll() is None
        wait_for(lambda: not alive(old_pid), timeout=30, what="the old process to exit")
    finally:
        worker.stop()


def test_reload_on_migrate_can_be_turned_off(
    test_db_name: str, broker_settings: str, before_colour: None
) -> None:
    worker = Command(
        test_db_name,
        "rundramatiq",
        "-p",
        "1",
        "-t",
        "1",
        "--queues",
        "fj-ops",
        env={"FUSION_JOBS_RELOAD_ON_MIGRATE": "false"},
    )
    try:
        wait_for(lambda: worker.ready(1), timeout=60, what="the worker")
        call_command("migrate", "fj_opsapp", verbosity=0)
        time.sleep(3)  # six polls' worth
        assert MIGRATED not in worker.output() and worker.ready(1) and not worker.ready(2)
    finally:
        worker.stop()


def test_runcrons_restarts_itself_after_a_migration(test_db_name: str, before_colour: None) -> None:
    crons = Command(test_db_name, "runcrons", "--poll-interval", "0.5")
    try:
        row = wait_for(
            lambda: WorkerHeartbeat.objects.filter(kind="crons").first(), timeout=60, what="crons row"
        )
        call_command("migrate", "fj_opsapp", verbosity=0)
        wait_for(lambda: MIGRATED in crons.output(), timeout=30, what="the reload line")
        fresh = wait_for(
            lambda: WorkerHeartbeat.objects.filter(kind="crons", started_at__gt=row.started_at).first(),
            timeout=60,
            what="the re-executed runcrons registering",
        )
        assert fresh.pid == crons.proc.pid and crons.proc.poll() is None  # same pid: exec, not a new process
        assert crons.output().count("fusion-jobs crons: broker=") == 2  # started afresh, declared again
    finally:
        crons.stop()


def test_reload_replaces_the_processes_when_a_source_file_changes(
    test_db_name: str, broker_settings: str
) -> None:
    source = ROOT / "tests" / "opsapp" / "codeversion.py"
    original = source.read_text()
    purge_queues(queues=("fj-ops",))
    worker = Command(test_db_name, "rundramatiq", "-p", "1", "-t", "1", "--queues", "fj-ops", "--reload")
    try:
        wait_for(lambda: worker.ready(1), timeout=60, what="the worker")
        handle = fusion_jobs.enqueue("ops-hello")
        first = wait_for(lambda: finished(handle), timeout=30, what="a first run")
        assert first.result["version"] == "original"

        marker = f"changed-{uuid.uuid4().hex[:8]}"
        source.write_text(original.replace('"original"', f'"{marker}"'))
        wait_for(lambda: "codeversion.py changed: reloading" in worker.output(), timeout=30, what="reload")
        wait_for(lambda: worker.ready(2), timeout=60, what="the replacement process")
        time.sleep(OLD_THREADS_IDLE_WAIT)
        after = fusion_jobs.enqueue("ops-hello")
        run = wait_for(lambda: finished(after), timeout=30, what="a run after")
        assert run.result["version"] == marker and run.result["pid"] != first.result["pid"]
    finally:
        source.write_text(original)
        worker.stop()
