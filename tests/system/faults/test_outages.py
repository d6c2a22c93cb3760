"""Broker and database outages on the real services: nothing accepted is lost.

These tests stop RabbitMQ's application and restart PostgreSQL, so they run alone on a machine
(CI runs them with the rest of the suite, one test at a time).
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

import fusion_jobs
from fusion_jobs.backends.broker import reset_broker
from fusion_jobs.models import JobRun
from fusion_jobs.relay import relay_once
from tests.conftest import wait_for
from tests.testapp.models import Marker

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def relay_until_empty(timeout: float = 60) -> None:
    def drained() -> bool:
        try:
            relay_once(min_age=0)
        except fusion_jobs.PublishError:
            return False
        return not JobRun.objects.filter(mode="worker", status="queued", published_at__isnull=True).exists()

    wait_for(drained, timeout=timeout, interval=0.5, what="the relay to publish every outboxed run")


def test_rabbitmq_stopped_during_a_burst_loses_nothing(settings, broker_settings, worker, services):
    settings.FUSION_JOBS_ON_PUBLISH_ERROR = "outbox"
    settings.FUSION_JOBS_PUBLISH_TIMEOUT = 1.0
    total = 2000
    accepted = 0
    outage_done = threading.Event()

    def outage() -> None:
        try:
            services.rabbit_stop()
            time.sleep(2)
            services.rabbit_start()
        finally:
            outage_done.set()

    slowest = 0.0
    for i in range(total):
        if i == 300:
            threading.Thread(target=outage, daemon=True).start()
        started = time.monotonic()
        fusion_jobs.enqueue("t-record", label=f"burst-{i}")
        slowest = max(slowest, time.monotonic() - started)
        accepted += 1
    outage_done.wait(180)
    reset_broker()
    relay_until_empty()
    wait_for(
        lambda: JobRun.objects.filter(task_name="t-record", status="succeeded").count() >= accepted,
        timeout=240,
        interval=1,
        what=f"all {accepted} runs to succeed",
    )
    unique = Marker.objects.filter(label__startswith="burst-").values("label").distinct().count()
    executions = Marker.objects.filter(label__startswith="burst-").count()
    print(
        f"\nburst: accepted={accepted} unique_completed={unique} duplicates={executions - unique} "
        f"slowest_enqueue={slowest:.2f}s lost_attempts={sum(JobRun.objects.values_list('lost_attempts', flat=True))}"
    )
    assert unique == accepted == total
    assert slowest < 3.0  # never hangs a caller on a dead broker
    assert not JobRun.objects.exclude(status="succeeded").filter(task_name="t-record").exists()


def test_rabbitmq_down_at_enqueue_returns_within_the_deadline(settings, broker_settings, worker, services):
    settings.FUSION_JOBS_ON_PUBLISH_ERROR = "outbox"
    services.rabbit_stop()
    try:
        started = time.monotonic()
        handle = fusion_jobs.enqueue("t-record", label="while-down")
        elapsed = time.monotonic() - started
    finally:
        services.rabbit_start()
    assert elapsed < 2.5
    run = JobRun.objects.get(pk=handle.run_id)
    assert (run.status, run.published_at) == ("queued", None)
    reset_broker()
    relay_until_empty()
    wait_for(lambda: JobRun.objects.filter(pk=handle.run_id, status="succeeded").exists(), timeout=60)
    assert Marker.objects.filter(label="while-down").count() == 1


def test_postgresql_restart_idle_and_mid_flight(broker_settings, make_worker, services):
    proc = make_worker(queues=("fj-crash",), threads=2, env={"FUSION_JOBS_TEST_CONN_MAX_AGE": "600"})
    first = fusion_jobs.enqueue("t-crashable", label="before-restart", seconds=0)
    wait_for(lambda: JobRun.objects.filter(pk=first.run_id, status="succeeded").exists())

    services.pg_restart()  # while the worker is idle, holding persistent connections
    connection.close()
    idle = fusion_jobs.enqueue("t-crashable", label="after-idle-restart", seconds=0)
    run = wait_for(lambda: JobRun.objects.filter(pk=idle.run_id, status="succeeded").first(), timeout=30)
    assert run.attempts == 1  # the stale connections were replaced, not failed on

    mid = fusion_jobs.enqueue("t-db-slow", label="mid-flight", seconds=3)
    wait_for(lambda: Marker.objects.filter(label="mid-flight:start").exists(), timeout=30)
    services.pg_restart()  # while the run is between its two queries
    connection.close()
    run = wait_for(
        lambda: JobRun.objects.filter(pk=mid.run_id, status__in=["succeeded", "failed"]).first(), timeout=60
    )
    assert run.status == "succeeded"
    assert Marker.objects.filter(label="mid-flight:end").count() == 1
    storm = proc.output().count("connection already closed")
    print(f"\npostgres restart: mid-flight attempts={run.attempts} 'connection already closed' lines={storm}")
    assert storm <= 2
