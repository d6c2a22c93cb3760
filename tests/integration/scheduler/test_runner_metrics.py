"""Cron scheduler metrics: ticks fired, late and skipped (in process), and the lease over HTTP from runcrons."""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

import fusion_jobs
from fusion_jobs.models import CronSchedule
from fusion_jobs.scheduler.firing import Publisher, fire_due
from tests.conftest import wait_for
from tests.support.processes import free_port
from tests.system.test_runcrons import CronProcess


def at(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2026, 6, 1, hour, minute, second, tzinfo=UTC)


def counter(name: str, schedule: str) -> float:
    return REGISTRY.get_sample_value(f"fusion_jobs_cron_ticks_{name}_total", {"schedule": schedule}) or 0.0


def declare(name: str, misfire: str) -> None:
    fusion_jobs.ensure_cron("t-cron-record", name, "*/10 * * * *", {"label": name}, misfire=misfire)  # type: ignore[arg-type]
    CronSchedule.objects.filter(name=name).update(next_fire_at=at(12, 0))


@pytest.mark.django_db
def test_ticks_fired_on_time_late_and_skipped_are_counted(clock, recorder):
    declare("m-on-time", "latest")
    declare("m-latest", "latest")
    declare("m-all", "all")
    before = {
        (n, s): counter(n, s)
        for n in ("fired", "late", "skipped")
        for s in ("m-on-time", "m-latest", "m-all")
    }

    clock.set(at(12, 0, 5))  # on time: only m-* at 12:00, 5 s after
    fire_due(clock=clock, publisher=Publisher(recorder))
    assert counter("fired", "m-on-time") - before["fired", "m-on-time"] == 1

    CronSchedule.objects.filter(name__in=["m-latest", "m-all"]).update(next_fire_at=at(12, 10))
    CronSchedule.objects.filter(name="m-on-time").update(next_fire_at=at(23, 0))
    clock.set(at(12, 35))  # 12:10, 12:20 missed; 12:30 is 5 minutes late, past the 60 s grace
    fire_due(clock=clock, publisher=Publisher(recorder))
    assert counter("late", "m-latest") - before["late", "m-latest"] == 1
    assert counter("skipped", "m-latest") - before["skipped", "m-latest"] == 2
    assert counter("late", "m-all") - before["late", "m-all"] == 3  # all three caught up
    assert counter("skipped", "m-all") - before["skipped", "m-all"] == 0


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_runcrons_serves_lease_held_over_http(test_db_name):
    port = free_port()
    process = CronProcess(test_db_name, 0, FUSION_JOBS_CRON_METRICS_PORT=str(port)).start()
    try:

        def lease_held() -> float | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                    text = response.read().decode()
            except OSError:
                return None
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == "fusion_jobs_cron_lease_held" and sample.value == 1:
                        return 1.0
            return None

        wait_for(lease_held, timeout=30, what="runcrons to report holding the lease")
        assert f"Prometheus metrics on http://127.0.0.1:{port}/metrics" in process.output()
    finally:
        process.stop()
