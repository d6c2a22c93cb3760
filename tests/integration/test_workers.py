"""The workers registry: each worker process and runcrons heartbeats its own row; readers tell live,
stale and gone apart; ``jobsstatus`` and the pages warn when runs wait on a queue nobody consumes.

Registration and stale detection use a real ``rundramatiq`` and ``runcrons`` (subprocesses, real
RabbitMQ and PostgreSQL); the readers are checked against rows written as a worker would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

import fusion_jobs
from fusion_jobs.models import CronSchedule, JobRun, WorkerHeartbeat
from fusion_jobs.workers import GONE, LIVE, STALE, Heartbeat, list_workers, unconsumed_warnings
from tests.conftest import BROKER_URL, ROOT, SESSION_WORKER_PIDS, WorkerProcess, purge_queues, wait_for
from tests.support.processes import environment

BEAT = 0.5


@pytest.fixture
def fast_beat(settings: Any) -> float:
    settings.FUSION_JOBS_WORKER_HEARTBEAT = BEAT
    return BEAT


def ours() -> Any:
    """The registry without the session worker's rows (it may be running, started by another module)."""
    return WorkerHeartbeat.objects.exclude(supervisor_pid__in=SESSION_WORKER_PIDS)


@pytest.fixture(autouse=True)
def _session_worker_unseen(request: pytest.FixtureRequest) -> None:
    """In a test inside a transaction, the session worker's rows are deleted and their keys held.

    Its processes beat into the test database; holding their rows' keys (inserted, then deleted,
    uncommitted) makes their next upsert wait for the test's rollback, so the readers under test
    see only the test's rows.
    """
    marker = request.node.get_closest_marker("django_db")
    if marker is None or marker.kwargs.get("transaction") or not SESSION_WORKER_PIDS:
        return
    host = socket.gethostname()
    for supervisor in SESSION_WORKER_PIDS:
        out = subprocess.run(["pgrep", "-P", str(supervisor)], capture_output=True, text=True, check=False)
        keys = [f"worker:{host}:{pid}" for pid in out.stdout.split()]
        now = timezone.now()
        WorkerHeartbeat.objects.bulk_create(
            [WorkerHeartbeat(id=key, host=host, pid=1, started_at=now, last_seen_at=now) for key in keys],
            update_conflicts=True,
            unique_fields=["id"],
            update_fields=["last_seen_at"],
        )
        WorkerHeartbeat.objects.filter(id__in=keys).delete()


def rows(kind: str = "worker") -> list[WorkerHeartbeat]:
    return list(ours().filter(kind=kind).order_by("pid"))


def states() -> dict[int, str]:
    return {
        view.row.pid: view.state
        for view in list_workers()
        if view.row.supervisor_pid not in SESSION_WORKER_PIDS
    }


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_worker_processes_register_heartbeat_count_and_age_out(
    test_db_name: str, fast_beat: float, broker_settings: str
) -> None:
    purge_queues(queues=("fj-ops",))
    worker = WorkerProcess(
        test_db_name,
        processes=2,
        threads=2,
        queues=("fj-ops",),
        env={"FUSION_JOBS_WORKER_HEARTBEAT": str(BEAT)},
    ).start()
    try:
        registered = wait_for(lambda: len(rows()) == 2 and rows(), what="two worker rows")
        assert {r.supervisor_pid for r in registered} == {worker.proc.pid}  # type: ignore[union-attr]
        assert {r.pid for r in registered} == set(worker.child_pids())
        for row in registered:
            assert row.queues == ["fj-ops"] and row.threads == 2 and row.processes == 2
            assert row.version == fusion_jobs.__version__ and row.stopped_at is None
        assert set(states().values()) == {LIVE}
        first_seen = {r.pid: r.last_seen_at for r in registered}
        wait_for(lambda: all(r.last_seen_at > first_seen[r.pid] for r in rows()), what="a second beat")

        # Counters travel with the beats: 3 done, 1 failed, and a run in progress is listed.
        for _ in range(3):
            fusion_jobs.enqueue("ops-hello")
        fusion_jobs.enqueue("ops-fail")
        wait_for(
            lambda: sum(r.runs_done for r in rows()) == 3 and sum(r.runs_failed for r in rows()) == 1,
            what="the counters",
        )
        slow = fusion_jobs.enqueue("ops-hello", sleep=5)
        listed = wait_for(
            lambda: [r for r in rows() if any(c["id"] == slow.run_id for c in r.current_runs)],
            what="the slow run listed as current",
        )
        assert listed[0].current_runs == [{"id": slow.run_id, "task": "ops-hello"}]
        assert listed[0].info["running"] == 1

        # Killed without a word: stale after three missed beats (not gone, not live).
        os.killpg(worker.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
        worker.proc.wait(10)  # type: ignore[union-attr]
        wait_for(lambda: set(states().values()) == {STALE}, timeout=10, what="both rows stale")
    finally:
        worker.stop()


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_a_cleanly_stopped_worker_is_gone_at_once(test_db_name: str, fast_beat: float) -> None:
    worker = WorkerProcess(
        test_db_name,
        processes=1,
        threads=1,
        queues=("fj-ops",),
        env={"FUSION_JOBS_WORKER_HEARTBEAT": str(BEAT)},
    ).start()
    wait_for(lambda: rows(), what="the worker row")
    worker.stop()
    (row,) = rows()
    assert row.stopped_at is not None
    assert states() == {row.pid: GONE}


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_runcrons_registers_itself_as_leader(test_db_name: str, fast_beat: float) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "FUSION_JOBS_TEST_DB": test_db_name,
        "FUSION_JOBS_WORKER_BROKER_URL": BROKER_URL,
        "FUSION_JOBS_WORKER_HEARTBEAT": str(BEAT),
    }
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runcrons", "--poll-interval", "0.5"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        row = wait_for(lambda: rows("crons") and rows("crons")[0], what="the runcrons row")
        assert row.pid == proc.pid and row.queues == []
        wait_for(lambda: rows("crons")[0].info.get("leader") is True, what="the lease in its row")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert rows("crons")[0].stopped_at is not None


@pytest.mark.django_db
def test_states_by_age_and_old_rows_are_forgotten(settings: Any) -> None:
    settings.FUSION_JOBS_WORKER_HEARTBEAT = 5.0
    settings.FUSION_JOBS_WORKER_FORGET_AFTER = 3600.0
    now = timezone.now()
    for pid, age in ((1, 4), (2, 20), (3, 299), (4, 400), (5, 7200)):
        _row(pid, now - timedelta(seconds=age))
    assert states() == {1: LIVE, 2: STALE, 3: STALE, 4: GONE, 5: GONE}
    Heartbeat("worker").forget_old()
    assert sorted(ours().values_list("pid", flat=True)) == [1, 2, 3, 4]


def test_the_heartbeat_writes_one_upsert_per_beat(django_assert_num_queries: Any, db: Any) -> None:
    beat = Heartbeat("worker", queues=["default"], threads=4)
    beat.run_started("r1", "t")
    with django_assert_num_queries(1):
        assert beat.beat()
    beat.run_ended("r1", failed=False)
    with django_assert_num_queries(1):
        assert beat.beat()
    (row,) = ours()
    assert (row.runs_done, row.runs_failed, row.current_runs) == (1, 0, [])


def _row(pid: int, seen: Any, queues: tuple[str, ...] = ("default",), stopped: Any = None) -> WorkerHeartbeat:
    return WorkerHeartbeat.objects.create(
        id=f"worker:h:{pid}",
        host="h",
        pid=pid,
        queues=list(queues),
        threads=4,
        started_at=seen - timedelta(minutes=1),
        last_seen_at=seen,
        stopped_at=stopped,
    )


def _queued(count: int, age: timedelta, queue: str = "default") -> None:
    when = timezone.now() - age
    for _ in range(count):
        JobRun.objects.create(
            task_name="demo-hello", queue=queue, status="queued", mode="worker", enqueued_at=when
        )


# --- the warning ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_warning_when_runs_wait_and_no_live_worker_consumes_the_queue(settings: Any) -> None:
    settings.FUSION_JOBS_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/fj_none"
    settings.FUSION_JOBS_WORKER_HEARTBEAT = 5.0
    _queued(3, timedelta(minutes=4))
    dead = _row(1, timezone.now() - timedelta(minutes=10))

    (line,) = unconsumed_warnings()
    assert line.startswith(
        "3 runs queued on `default` for 4 min; no worker consuming it has been seen since "
    )
    assert "(10 min ago)" in line

    _row(2, timezone.now(), queues=("other",))  # live, but not on this queue
    assert len(unconsumed_warnings()) == 1
    _row(3, timezone.now())
    assert unconsumed_warnings() == []  # a live worker consumes it

    WorkerHeartbeat.objects.exclude(pk=dead.pk).delete()
    dead.delete()
    (line,) = unconsumed_warnings()
    assert "no worker consuming it has ever registered" in line


@pytest.mark.django_db
def test_no_warning_inline_or_for_runs_deferred_to_later(settings: Any) -> None:
    JobRun.objects.create(task_name="demo-hello", status="queued", mode="worker")
    assert unconsumed_warnings() == []  # inline: no worker is needed
    settings.FUSION_JOBS_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/fj_none"
    JobRun.objects.all().update(
        enqueued_at=timezone.now() - timedelta(hours=1), next_attempt_at=timezone.now() + timedelta(hours=1)
    )
    assert unconsumed_warnings() == []  # waits for its time (enqueue_at), not for a worker


@pytest.mark.django_db
def test_dashboard_shows_the_warning(settings: Any, client: Client) -> None:
    # The example's sandbox shows the same warning: tests/example/sandbox/test_sandbox_security.py.
    settings.FUSION_JOBS_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/fj_none"
    _queued(3, timedelta(minutes=4))
    staff = User.objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(staff)

    dashboard = client.get("/admin/fusion_jobs/jobrun/dashboard/").content.decode()

    expected = "3 runs queued on `default` for 4 min; no worker consuming it has ever registered"
    assert expected in dashboard

    _row(1, timezone.now())
    assert "no worker consuming it" not in client.get("/admin/fusion_jobs/jobrun/dashboard/").content.decode()


@pytest.mark.django_db
def test_admin_workers_page_lists_live_stale_and_gone(settings: Any, client: Client) -> None:
    settings.FUSION_JOBS_WORKER_HEARTBEAT = 5.0
    now = timezone.now()
    _row(101, now)
    _row(102, now - timedelta(seconds=60))
    _row(103, now, stopped=now)
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))

    page = client.get("/admin/fusion_jobs/workerheartbeat/")
    text = page.content.decode()

    assert page.status_code == 200
    for pid, state in ((101, "live"), (102, "stale"), (103, "gone")):
        assert f'data-pid="{pid}" data-state="{state}"' in text
    assert '<meta http-equiv="refresh" content="10">' in text  # it keeps itself current
    assert client.get("/admin/fusion_jobs/workerheartbeat/add/").status_code == 403
    assert "/admin/fusion_jobs/workerheartbeat/" in client.get("/admin/").content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["?host=a%00b", "?kind=%00", "?q=a%00b"])
def test_admin_workers_page_takes_a_nul_in_a_filter_without_a_server_error(
    client: Client, query: str
) -> None:
    """PostgreSQL refuses NUL in a query parameter: the admin's "invalid lookup" redirect, not a 500."""
    _row(101, timezone.now())
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))
    response = client.get("/admin/fusion_jobs/workerheartbeat/" + query)
    assert response.status_code in (200, 302)
    if response.status_code == 302:
        assert response["Location"].endswith("?e=1")


# --- jobsstatus -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_jobsstatus_prints_workers_queues_and_schedules(settings: Any) -> None:
    settings.FUSION_JOBS_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/fj_none"
    settings.FUSION_JOBS_WORKER_HEARTBEAT = 5.0
    _queued(2, timedelta(minutes=3), queue="fj-ops")
    _row(7, timezone.now(), queues=("default",))
    CronSchedule.objects.create(
        name="nightly",
        task_name="demo-hello",
        expression="0 3 * * *",
        next_fire_at=timezone.now() + timedelta(hours=2),
    )

    out = StringIO()
    call_command("jobsstatus", "--no-broker", stdout=out)
    text = out.getvalue()

    assert "Workers: 1 live, 0 stale, 0 gone" in text
    assert "live  worker h:7 queues=default threads=4" in text
    assert "fj-ops: 2 waiting, oldest waiting 3 min; 0 live worker(s)" in text
    assert "WARNING: 2 runs queued on `fj-ops` for 3 min" in text
    assert "nightly: " in text and "(in 1" in text and "'0 3 * * *' UTC -> demo-hello" in text

    out = StringIO()
    call_command("jobsstatus", "--json", "--no-broker", stdout=out)
    report = json.loads(out.getvalue())
    assert [w["pid"] for w in report["workers"]] == [7] and report["workers"][0]["state"] == "live"
    queues = {q["name"]: q for q in report["queues"]}
    assert queues["fj-ops"]["waiting"] == 2 and queues["fj-ops"]["unconsumed"] is True
    assert queues["default"]["live_workers"] == 1
    assert report["schedules"][0]["name"] == "nightly"
    assert report["warnings"] and report["jobs"]["mode"] == "broker"


@pytest.mark.django_db
def test_jobsstatus_says_draining_only_of_a_live_worker(settings: Any) -> None:
    """A worker's last beat while draining leaves ``draining`` in its row; once stopped it is gone, not draining."""
    settings.FUSION_JOBS_WORKER_HEARTBEAT = 5.0
    now = timezone.now()
    for pid, stopped in ((8, None), (9, now)):
        row = _row(pid, now, stopped=stopped)
        row.info = {"draining": True}
        row.save()
    out = StringIO()
    call_command("jobsstatus", "--json", "--no-broker", stdout=out)
    draining = {w["pid"]: (w["state"], w["draining"]) for w in json.loads(out.getvalue())["workers"]}
    assert draining == {8: (LIVE, True), 9: (GONE, False)}


@pytest.mark.parametrize(
    ("database", "said"),
    [("postgres", "fusion_jobs_workerheartbeat"), ("fj_no_such_database", "fj_no_such_database")],
)
def test_jobsstatus_on_an_unmigrated_or_missing_database_is_one_line_and_exit_1(
    database: str, said: str
) -> None:
    """A health check must fail with a reason, not a traceback."""
    env = environment(
        ("FUSION_JOBS_", "DJANGO_"), DJANGO_SETTINGS_MODULE="tests.settings", FUSION_JOBS_TEST_DB=database
    )
    out = subprocess.run(
        [sys.executable, "manage.py", "jobsstatus", "--json", "--no-broker"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1, out.stderr
    assert said in out.stderr and "not migrated" in out.stderr and "Traceback" not in out.stderr
    assert out.stdout == ""


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_jobsstatus_asks_rabbitmq_for_the_depth(broker_settings: str) -> None:
    from fusion_jobs.backends.broker import reset_broker

    purge_queues(queues=("fj-ops",))
    reset_broker()
    for _ in range(2):
        fusion_jobs.enqueue("ops-hello")
    out = StringIO()
    call_command("jobsstatus", "--json", stdout=out)
    queues = {q["name"]: q for q in json.loads(out.getvalue())["queues"]}
    purge_queues(queues=("fj-ops",))
    assert queues["fj-ops"]["broker_messages"] == 2


def test_a_skipped_duplicate_delivery_does_not_hide_the_running_copy(db: Any) -> None:
    """Two deliveries of one run id (a duplicate copy skipped while the first runs): the running
    copy stays listed until it ends itself."""
    beat = Heartbeat("worker", queues=["default"], threads=4)
    running, duplicate = object(), object()
    beat.run_started("r1", "t", delivery=running)
    beat.run_started("r1", "t", delivery=duplicate)
    beat.run_ended("r1", failed=None, delivery=duplicate)  # skipped: a copy of a running run
    beat.beat()
    (row,) = ours()
    assert row.current_runs == [{"id": "r1", "task": "t"}]
    beat.run_ended("r1", failed=False, delivery=running)
    beat.beat()
    (row,) = ours()
    assert (row.runs_done, row.current_runs) == (1, [])
