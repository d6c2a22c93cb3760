"""Prometheus metrics: a real worker's values after a known workload, scraped over HTTP, and the
database gauges view (``fusion_jobs.urls``) with its authentication."""

from __future__ import annotations

import re
import socket
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

import fusion_jobs
from fusion_jobs.backends.broker import publish
from fusion_jobs.models import JobRun
from fusion_jobs.registry import get_task
from tests.conftest import purge_queues, wait_for
from tests.support.processes import free_port

NAMESPACE = "fjmetrics"  # this test's worker consumes only these queues
QUEUE = "fj-metrics"  # t-metrics-* tasks: only the known-workload test's worker consumes it


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(port: int) -> dict[Any, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return samples(response.read().decode())


def terminal(run_id: str) -> bool:
    return JobRun.objects.get(pk=run_id).status in ("succeeded", "failed", "timed_out")


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_worker_metrics_after_a_known_workload_scraped_over_http(broker_settings, make_worker, settings):
    # Tasks on a queue only this worker consumes, in the suite's own namespace: a retry may be
    # published by any process's relay (they share the database) and still reach this worker.
    purge_queues(queues=(QUEUE,))
    port = free_port()
    worker = make_worker(
        queues=(QUEUE,),
        processes=2,  # the values are the sum over both processes (multiprocess mode)
        threads=2,
        env={"FUSION_JOBS_METRICS_PORT": str(port)},
    )
    assert f"Prometheus metrics on http://127.0.0.1:{port}/metrics" in worker.output()

    ok = [fusion_jobs.enqueue("t-metrics-record", label=f"m{i}") for i in range(3)]
    failing = fusion_jobs.enqueue("t-metrics-fail", label="m-fail")  # max_retries=2: 3 attempts
    slow = fusion_jobs.enqueue("t-metrics-sleep", seconds=5)  # execution_timeout 1 s, no retry
    for handle in [*ok, failing, slow]:
        wait_for(lambda h=handle: terminal(h.run_id), timeout=40, what=f"run {handle.run_id}")
    # A second message for a finished run: the worker skips it.
    publish(get_task("t-metrics-record"), ok[0].run_id, {"label": "m0"})

    def scraped() -> dict[Any, float] | None:
        found = scrape(port)
        return (
            found
            if value(found, "fusion_jobs_runs_skipped_total", task="t-metrics-record", queue=QUEUE)
            else None
        )

    found = wait_for(scraped, what="the skipped delivery to be counted")
    rec = {"task": "t-metrics-record", "queue": QUEUE}
    fail = {"task": "t-metrics-fail", "queue": QUEUE}
    sleep = {"task": "t-metrics-sleep", "queue": QUEUE}
    assert value(found, "fusion_jobs_runs_started_total", **rec) == 3
    assert value(found, "fusion_jobs_runs_succeeded_total", **rec) == 3
    assert value(found, "fusion_jobs_runs_skipped_total", **rec) == 1
    assert value(found, "fusion_jobs_runs_started_total", **fail) == 3
    assert value(found, "fusion_jobs_runs_retried_total", **fail) == 2
    assert value(found, "fusion_jobs_runs_failed_total", **fail) == 1
    assert value(found, "fusion_jobs_runs_timed_out_total", **sleep) == 1
    assert value(found, "fusion_jobs_runs_failed_total", **sleep) == 0
    assert value(found, "fusion_jobs_run_duration_seconds_count", **rec) == 3
    assert value(found, "fusion_jobs_run_queue_wait_seconds_count", **fail) == 3
    assert 1.0 <= value(found, "fusion_jobs_run_duration_seconds_sum", **sleep) < 30
    assert value(found, "fusion_jobs_runs_in_progress", **rec) == 0
    assert value(found, "fusion_jobs_writer_batch_size_count") >= 1

    # The supervisor's multiprocess directory goes with it.
    directory = Path(re.search(r"multiprocess directory (\S+)\)", worker.output()).group(1))
    assert directory.is_dir() and any(directory.glob("counter_*.db"))
    worker.stop()
    assert not directory.exists()


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_metrics_port_without_a_free_port_is_one_line_and_exit_2(broker_settings, test_db_name):
    import subprocess
    import sys

    from tests.conftest import BROKER_URL, ROOT

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "manage.py", "rundramatiq", "-p", "1", "--metrics-port", str(port)],
            cwd=ROOT,
            env={
                **__import__("os").environ,
                "DJANGO_SETTINGS_MODULE": "tests.settings",
                "FUSION_JOBS_TEST_DB": test_db_name,
                "FUSION_JOBS_WORKER_BROKER_URL": BROKER_URL,
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"cannot serve metrics on 127.0.0.1:{port}" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


# --- the database gauges view --------------------------------------------------------------------

TOKEN = "s3cret-metrics-token-0123456789"


def run_row(**fields: Any) -> JobRun:
    defaults = {"task_name": "t-record", "queue": "default", "kwargs": {}}
    return JobRun.objects.create(**{**defaults, **fields})


@pytest.fixture
def rows(db: Any) -> None:
    now = timezone.now()
    run_row(status="queued", enqueued_at=now - timedelta(seconds=30))
    run_row(status="queued", enqueued_at=now - timedelta(minutes=10))
    run_row(status="queued", queue="fj-crash", enqueued_at=now - timedelta(hours=2))
    run_row(status="queued", next_attempt_at=now + timedelta(hours=1))  # deferred: not waiting yet
    run_row(status="running", started_at=now)
    run_row(status="failed", finished_at=now - timedelta(minutes=1))
    run_row(status="timed_out", task_name="t-sleep", finished_at=now - timedelta(minutes=2))
    run_row(status="failed", finished_at=now - timedelta(minutes=30))  # outside the window


@pytest.mark.urls("tests.trace_urls")
def test_metrics_view_refuses_anonymous_and_a_wrong_token(rows, client, settings):
    settings.FUSION_JOBS_METRICS_TOKEN = TOKEN
    anonymous = client.get("/jobs/metrics")
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"].startswith("Bearer")
    assert b"fusion_jobs" not in anonymous.content
    assert client.get("/jobs/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/jobs/metrics", HTTP_AUTHORIZATION=TOKEN).status_code == 401  # no scheme
    settings.FUSION_JOBS_METRICS_TOKEN = ""
    assert client.get("/jobs/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401  # empty: off


@pytest.mark.urls("tests.trace_urls")
def test_metrics_view_refuses_a_non_staff_user(rows, client, django_user_model):
    user = django_user_model.objects.create_user("plain", password="x")
    client.force_login(user)
    assert client.get("/jobs/metrics").status_code == 401


@pytest.mark.urls("tests.trace_urls")
def test_metrics_view_serves_database_gauges_to_the_token_and_to_staff(
    rows, client, settings, django_user_model
):
    settings.FUSION_JOBS_METRICS_TOKEN = TOKEN
    response = client.get("/jobs/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    found = samples(response.content.decode())
    assert value(found, "fusion_jobs_runs_waiting", queue="default") == 2
    assert value(found, "fusion_jobs_runs_waiting", queue="fj-crash") == 1
    assert value(found, "fusion_jobs_runs_waiting_by_age", queue="default", max_age_seconds="60") == 1
    assert value(found, "fusion_jobs_runs_waiting_by_age", queue="default", max_age_seconds="900") == 2
    assert value(found, "fusion_jobs_runs_waiting_by_age", queue="fj-crash", max_age_seconds="3600") == 0
    assert 7000 < value(found, "fusion_jobs_runs_waiting_oldest_seconds", queue="fj-crash") < 7300
    assert value(found, "fusion_jobs_runs_running", queue="default") == 1
    assert value(found, "fusion_jobs_runs_failed_recent", task="t-record", queue="default") == 1
    assert value(found, "fusion_jobs_runs_failed_recent", task="t-sleep", queue="default") == 1
    assert ("fusion_jobs_relay_backlog", ()) in found

    staff = django_user_model.objects.create_user("ops", password="x", is_staff=True)
    client.force_login(staff)
    assert client.get("/jobs/metrics").status_code == 401  # staff, but may not view the runs
    staff.user_permissions.add(
        Permission.objects.get(codename="view_jobrun", content_type__app_label="fusion_jobs")
    )
    client.force_login(django_user_model.objects.get(pk=staff.pk))
    as_staff = client.get("/jobs/metrics")
    assert as_staff.status_code == 200
    assert value(samples(as_staff.content.decode()), "fusion_jobs_runs_waiting", queue="default") == 2


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_process_counts_a_lost_attempt_and_leaves_no_run_in_progress(
    broker_settings, make_worker, settings
):
    """The replaced process's counters stay in the totals; its in-progress gauge is dropped."""
    import os
    import signal

    from tests.testapp.models import Marker

    settings.FUSION_JOBS_QUEUE_NAMESPACE = NAMESPACE
    port = free_port()
    worker = make_worker(
        queues=("fj-crash",),
        processes=1,
        threads=1,
        env={"FUSION_JOBS_METRICS_PORT": str(port), "FUSION_JOBS_QUEUE_NAMESPACE": NAMESPACE},
    )
    handle = fusion_jobs.enqueue("t-crashable", label="metrics-lost", seconds=3)
    started = wait_for(lambda: Marker.objects.filter(label="metrics-lost:start").first(), what="attempt 1")
    crash = {"task": "t-crashable", "queue": "fj-crash"}
    assert value(scrape(port), "fusion_jobs_runs_in_progress", **crash) == 1
    os.kill(started.value["pid"], signal.SIGKILL)  # the worker process, not the supervisor
    wait_for(lambda: terminal(handle.run_id), timeout=60, what="the redelivered run to finish")

    found = wait_for(
        lambda: (lambda f: f if value(f, "fusion_jobs_runs_succeeded_total", **crash) else None)(
            scrape(port)
        ),
        what="the redelivered attempt's success to be counted",
    )
    assert value(found, "fusion_jobs_lost_attempts_total", task="t-crashable") == 1
    assert value(found, "fusion_jobs_runs_started_total", **crash) == 2  # the dead process's start stays
    assert value(found, "fusion_jobs_runs_in_progress", **crash) == 0  # its running attempt does not
    assert "exited (killed by SIGKILL" in worker.output()
