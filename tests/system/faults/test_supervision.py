"""``rundramatiq`` as a supervisor: its workers die with it, one dead worker costs one process's
capacity and nothing more, and bad start-up conditions (wrong broker password, database down or
not migrated) give one clear line instead of a flood or a traceback. Real RabbitMQ and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from urllib.parse import unquote, urlsplit

import psycopg
import pytest

import fusion_jobs
from fusion_jobs.models import JobRun
from tests.conftest import BROKER_URL, ROOT, WorkerProcess, purge_queues, wait_for
from tests.support.processes import alive, descendants
from tests.testapp.models import Marker

pytestmark = [pytest.mark.broker]

VHOST = unquote(urlsplit(BROKER_URL).path[1:]) or "/"


def consumers(queue: str) -> int:
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", VHOST, "name", "consumers"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == queue:
            return int(parts[1])
    return 0


def marker_pid(label: str) -> int | None:
    marker = Marker.objects.filter(label=label).first()
    return int(marker.value["pid"]) if marker else None


def manage(*args: str, env: dict[str, str], seconds: float) -> tuple[int | None, str]:
    """Run a command for at most ``seconds`` (then SIGTERM): its exit code (None if it was stopped) and output."""
    proc = subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PYTHONUNBUFFERED": "1",
            "FUSION_JOBS_WORKER_BROKER_URL": BROKER_URL,
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=seconds)
        return proc.returncode, out.decode(errors="replace")
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            pytest.fail(f"{args[0]} did not stop on SIGTERM:\n{out.decode(errors='replace')}")
        return None, out.decode(errors="replace")


@pytest.fixture
def crash_queue(transactional_db: object) -> None:
    purge_queues(queues=("fj-crash",))


@pytest.mark.slow
def test_sigkill_of_the_supervisor_takes_its_workers_along(test_db_name, crash_queue):
    first = WorkerProcess(test_db_name, processes=2, threads=1, queues=("fj-crash",)).start()
    tree = descendants(first.proc.pid)
    second = None
    try:
        assert len(tree) >= 2, tree
        wait_for(lambda: consumers("fj-crash") == 2, what="2 consumers on fj-crash")
        os.kill(first.proc.pid, signal.SIGKILL)  # the supervisor only, as an OOM killer would
        first.proc.wait(10)
        wait_for(lambda: not any(alive(pid) for pid in tree), timeout=15, what="the workers to die with it")
        second = WorkerProcess(test_db_name, processes=2, threads=1, queues=("fj-crash",)).start()
        wait_for(lambda: consumers("fj-crash") == 2, what="2 consumers again")
        time.sleep(2)
        assert consumers("fj-crash") == 2, "consumers doubled after a restart"
    finally:
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        first.stop()
        if second:
            second.stop()


@pytest.mark.slow
def test_one_dead_worker_process_leaves_the_others_consuming(broker_settings, make_worker, crash_queue):
    """2 processes x 1 thread; one runs a long task, the other is SIGKILLed: a new run starts at once."""
    proc = make_worker(processes=2, threads=1, queues=("fj-crash",))
    long = fusion_jobs.enqueue("t-crashable", label="long", seconds=15)
    busy = wait_for(lambda: marker_pid("long:start"), what="the long task to start")
    others = [p for p in descendants(proc.proc.pid) if p != busy and busy not in descendants(p)]
    assert others, "no idle worker process to kill"
    started = time.monotonic()
    for pid in others:
        os.kill(pid, signal.SIGKILL)
    short = fusion_jobs.enqueue("t-crashable", label="short", seconds=0)
    wait_for(lambda: marker_pid("short:end"), timeout=25, what="the short run to finish")
    waited = time.monotonic() - started
    print(f"short run finished {waited:.1f} s after the kill")
    assert not Marker.objects.filter(label="long:end").exists(), (
        f"the short run waited for the long task to end ({waited:.0f} s):\n{proc.output()[-3000:]}"
    )
    assert JobRun.objects.get(pk=short.run_id).status == "succeeded"
    assert JobRun.objects.get(pk=long.run_id).status == "running"
    assert "restarting in" in proc.output()
    # The survivor was never interrupted; and nothing is left running for the next test's workers.
    wait_for(
        lambda: JobRun.objects.get(pk=long.run_id).status == "succeeded", timeout=30, what="the long run"
    )


def test_a_wrong_broker_password_fails_fast_with_one_line(test_db_name):
    parts = urlsplit(BROKER_URL)
    bad = parts._replace(netloc=f"{parts.username}:sentinel-wrong-pw@{parts.hostname}:{parts.port or 5672}")
    code, out = manage(
        "rundramatiq",
        "-p",
        "2",
        env={"FUSION_JOBS_TEST_DB": test_db_name, "FUSION_JOBS_WORKER_BROKER_URL": bad.geturl()},
        seconds=45,
    )
    assert code not in (0, None), f"exit code {code}:\n{out[-3000:]}"
    assert "sentinel-wrong-pw" not in out
    assert "ready for action" not in out
    complaints = [
        line for line in out.splitlines() if "refused" in line or "ERROR" in line or "CRITICAL" in line
    ]
    assert len(complaints) == 1, out[-3000:]
    assert "password" in complaints[0] and "***" in complaints[0]
    assert "Traceback" not in out


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_clean_sigterm_is_quiet(broker_settings, make_worker, crash_queue):
    proc = make_worker(processes=2, threads=2, queues=("fj-crash",))
    handle = fusion_jobs.enqueue("t-crashable", label="quiet", seconds=0)
    wait_for(lambda: JobRun.objects.get(pk=handle.run_id).status == "succeeded", what="the run")
    started = time.monotonic()
    proc.stop()
    assert proc.proc.returncode == 0, proc.output()[-3000:]
    assert time.monotonic() - started < 15
    noisy = [
        line
        for line in proc.output().splitlines()
        if any(word in line for word in ("ERROR", "CRITICAL", "Traceback", "exited unexpectedly"))
    ]
    assert noisy == [], "\n".join(noisy)


@pytest.mark.parametrize("command", ["rundramatiq", "runcrons"])
def test_database_down_at_start_is_one_line_per_attempt_and_retried(command, test_db_name):
    code, out = manage(command, env={"FUSION_JOBS_TEST_DB": test_db_name, "PGPORT": "1"}, seconds=8)
    assert code is None, f"{command} exited ({code}) instead of retrying:\n{out[-3000:]}"
    lines = [line for line in out.splitlines() if "database unavailable" in line]
    assert len(lines) >= 2, out[-3000:]
    assert all("retrying in" in line for line in lines)
    assert "Traceback" not in out, out[-3000:]


@pytest.fixture
def empty_database(test_db_name: str):
    name = f"{test_db_name}_empty"
    params = {"host": os.environ.get("PGHOST", "127.0.0.1"), "user": os.environ.get("PGUSER", "postgres")}
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield name
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("command", ["rundramatiq", "runcrons"])
def test_database_not_migrated_says_run_migrate(command, empty_database):
    code, out = manage(command, env={"FUSION_JOBS_TEST_DB": empty_database}, seconds=6)
    assert code is None, f"{command} exited ({code}) instead of waiting:\n{out[-3000:]}"
    lines = [line for line in out.splitlines() if "manage.py migrate" in line]
    assert lines, out[-3000:]
    assert "Traceback" not in out, out[-3000:]


@pytest.mark.slow
def test_sighup_replaces_the_worker_processes_and_the_supervisor_stays(make_worker, crash_queue):
    proc = make_worker(processes=2, threads=1, queues=("fj-crash",))
    before = set(proc.child_pids())
    assert len(before) == 2
    os.kill(proc.proc.pid, signal.SIGHUP)
    wait_for(
        lambda: len(set(proc.child_pids()) - before) == 2 and proc.output().count("ready for action") >= 4,
        timeout=40,
        what="two new worker processes",
    )
    assert proc.proc.poll() is None
    assert not any(alive(pid) for pid in before)
    wait_for(lambda: consumers("fj-crash") == 2, what="2 consumers after the reload")
    assert "exited (" not in proc.output()  # a requested restart is not reported as a death
