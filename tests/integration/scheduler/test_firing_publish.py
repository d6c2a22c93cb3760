"""Publishing claimed ticks on the real RabbitMQ: executed once, kept through a broker outage, reconnected after a drop."""

from __future__ import annotations

import shutil
import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone

import fusion_jobs
from fusion_jobs.backends import broker as broker_backend
from fusion_jobs.backends.broker import keep_publishers_alive
from fusion_jobs.models import CronSchedule, JobRun
from fusion_jobs.scheduler.firing import Publisher, fire_schedule, publish_pending
from tests.conftest import BROKER_URL, wait_for
from tests.testapp.models import Marker

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]


def due_now(name: str, label: str) -> None:
    fusion_jobs.ensure_cron("t-cron-record", name, "* * * * *", {"label": label})
    CronSchedule.objects.filter(name=name).update(
        next_fire_at=timezone.now().replace(second=0, microsecond=0)
    )


def fire_one(name: str, publisher: Publisher | None = None) -> JobRun:
    [(_, run_id)] = fire_schedule(name, publisher=publisher or Publisher()).fired
    return JobRun.objects.get(pk=run_id)


def finished(run_id: object) -> JobRun | None:
    run = JobRun.objects.get(pk=run_id)
    return run if run.is_terminal else None


def test_a_fired_tick_is_published_and_runs_once_on_the_worker(broker_settings, worker):
    due_now("t-cron-live", "live")
    run = fire_one("t-cron-live")
    assert run.published_at is not None
    done = wait_for(lambda: finished(run.pk), timeout=30, what="the cron run to finish")
    assert done.status == "succeeded" and done.attempts == 1
    assert list(Marker.objects.filter(label="live").values_list("value__run", flat=True)) == [str(run.pk)]


def test_a_claimed_tick_survives_a_broker_outage_and_is_published_later(settings, worker, caplog):
    broker_backend.reset_broker()
    settings.FUSION_JOBS_BROKER_URL = "amqp://guest:sentinel-pw@127.0.0.1:5999/fj_crons"  # nothing listens
    settings.FUSION_JOBS_PUBLISH_TIMEOUT = 0.5
    try:
        due_now("t-cron-outage", "outage")
        publisher = Publisher()
        run = fire_one("t-cron-outage", publisher)
        assert publisher.failed is not None and run.published_at is None and run.status == "queued"
        assert publish_pending(min_age=0) == 0  # still down: kept, not lost, not run inline
        assert "sentinel-pw" not in caplog.text and "guest:***@127.0.0.1:5999" in caplog.text
        broker_backend.reset_broker()
        settings.FUSION_JOBS_BROKER_URL = BROKER_URL  # the broker is back
        assert publish_pending(min_age=0) == 1
        done = wait_for(lambda: finished(run.pk), timeout=30, what="the run published after the outage")
        assert done.status == "succeeded" and done.published_at is not None
        assert Marker.objects.filter(label="outage").count() == 1
    finally:
        broker_backend.reset_broker()


def _drop_our_connection() -> None:
    """Make RabbitMQ close the idle publishing connection, as it does after missed heartbeats."""
    [publisher] = broker_backend._pool(broker_backend.get_broker())._idle
    host, port = publisher.connection._impl._transport._sock.getsockname()
    listing = subprocess.run(
        ["rabbitmqctl", "list_connections", "pid", "name", "-q", "--no-table-headers"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    [pid] = [line.split("\t")[0] for line in listing.splitlines() if f"\t{host}:{port} -> " in line]
    subprocess.run(
        ["rabbitmqctl", "close_connection", pid, "dropped by the test"],
        check=True,
        capture_output=True,
        timeout=30,
    )


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl to drop a connection")
def test_a_connection_dropped_by_the_broker_is_replaced(broker_settings, worker):
    due_now("t-cron-drop", "drop")
    first = fire_one("t-cron-drop")
    assert first.published_at is not None
    # 1. Dropped while idle, seen by the next publish: it reconnects and publishes.
    _drop_our_connection()
    CronSchedule.objects.filter(name="t-cron-drop").update(
        next_fire_at=first.scheduled_for + timedelta(minutes=1)
    )
    second = fire_schedule(
        "t-cron-drop", clock=lambda: first.scheduled_for + timedelta(minutes=1, seconds=1)
    ).fired
    assert JobRun.objects.get(pk=second[0][1]).published_at is not None
    # 2. Dropped, and noticed by the loop's heartbeat service first: discarded, then replaced.
    _drop_our_connection()
    wait_for(keep_publishers_alive, timeout=15, what="runcrons to notice the dropped connection")
    assert broker_backend._pool(broker_backend.get_broker())._idle == []
    CronSchedule.objects.filter(name="t-cron-drop").update(
        next_fire_at=first.scheduled_for + timedelta(minutes=2)
    )
    third = fire_schedule(
        "t-cron-drop", clock=lambda: first.scheduled_for + timedelta(minutes=2, seconds=1)
    ).fired
    assert JobRun.objects.get(pk=third[0][1]).published_at is not None
    runs = [wait_for(lambda r=r: finished(r), timeout=30) for r in (first.pk, second[0][1], third[0][1])]
    assert [r.status for r in runs] == ["succeeded"] * 3
    assert Marker.objects.filter(label="drop").count() == 3
