"""Outbox mode: a broker outage at enqueue time keeps the run in the database until the relay publishes it."""

from __future__ import annotations

import time

import pytest

import fusion_jobs
from fusion_jobs.backends.broker import reset_broker
from fusion_jobs.models import JobRun
from fusion_jobs.relay import relay_once
from tests.conftest import BROKER_URL, wait_for
from tests.testapp.models import Marker

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]

DOWN_URL = "amqp://guest:guest@127.0.0.1:1/"  # nothing listens on port 1: the broker is "down"


def test_outbox_keeps_the_run_and_the_relay_publishes_it(settings, worker):
    settings.FUSION_JOBS_ON_PUBLISH_ERROR = "outbox"
    settings.FUSION_JOBS_BROKER_URL = DOWN_URL
    reset_broker()
    started = time.monotonic()
    handle = fusion_jobs.enqueue("t-record", label="outboxed")
    elapsed = time.monotonic() - started
    assert elapsed < 2.5, f"enqueue took {elapsed:.2f} s with the broker down"
    assert handle.mode == "queued"
    run = JobRun.objects.get(pk=handle.run_id)
    assert (run.status, run.mode, run.published_at) == ("queued", "worker", None)
    assert not Marker.objects.filter(label="outboxed").exists()  # never run inline in outbox mode

    # The relay does nothing while the broker is still down, and loses nothing.
    with pytest.raises(fusion_jobs.PublishError):
        relay_once(min_age=0)
    assert JobRun.objects.get(pk=handle.run_id).published_at is None

    settings.FUSION_JOBS_BROKER_URL = BROKER_URL  # the broker is back
    reset_broker()
    try:
        assert relay_once(min_age=0) == 1
    finally:
        reset_broker()
    run = wait_for(
        lambda: JobRun.objects.filter(pk=handle.run_id, status="succeeded").first(), what="relayed run"
    )
    assert run.published_at is not None and run.attempts == 1
    assert Marker.objects.filter(label="outboxed").count() == 1
    assert relay_once(min_age=0) == 0  # nothing left


def test_relay_skips_fresh_rows_still_being_published(settings):
    settings.FUSION_JOBS_ON_PUBLISH_ERROR = "outbox"
    settings.FUSION_JOBS_BROKER_URL = DOWN_URL
    reset_broker()
    try:
        fusion_jobs.enqueue("t-record", label="fresh")
        assert relay_once() == 0  # younger than MIN_AGE_SECONDS: its own process may still publish it
    finally:
        reset_broker()
