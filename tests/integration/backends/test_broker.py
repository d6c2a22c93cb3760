"""The broker path on the real RabbitMQ and PostgreSQL, executed by a real ``rundramatiq`` subprocess."""

from __future__ import annotations

import uuid

import pytest
from django.db import transaction

import fusion_jobs
from fusion_jobs.backends.broker import publish
from fusion_jobs.exceptions import PublishError
from fusion_jobs.models import JobRun
from fusion_jobs.registry import get_task
from tests.conftest import wait_for
from tests.testapp.models import Marker

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]


def finished(run_id: str) -> JobRun | None:
    run = JobRun.objects.get(pk=run_id)
    return run if run.is_terminal else None


def test_worker_executes_and_records(broker_settings, worker):
    handle = fusion_jobs.enqueue("t-record", label="via-worker", value={"n": 1})
    assert handle.mode == "queued"
    run = wait_for(lambda: finished(handle.run_id), what="the run to finish")
    assert run.status == "succeeded"
    assert (run.mode, run.attempts, run.queue) == ("worker", 1, "default")
    assert run.published_at is not None
    assert run.worker and run.worker.split(":")[-1] != ""
    assert run.result["label"] == "via-worker"
    marker = Marker.objects.get(label="via-worker")
    assert marker.value == {"n": 1}
    assert run.result["pid"] != __import__("os").getpid()  # it ran in the worker, not here


def test_same_task_same_arguments_as_inline(broker_settings, worker):
    handle = fusion_jobs.enqueue("t-echo", pair=(1, 2))
    run = wait_for(lambda: finished(handle.run_id))
    assert run.result["kwargs"] == {"pair": [1, 2]}
    assert run.result["types"]["pair"] == "list"


def test_retries_with_backoff_then_success(broker_settings, worker):
    handle = fusion_jobs.enqueue("t-fail-then-pass", label="flaky", failures=2)
    run = wait_for(lambda: finished(handle.run_id), timeout=30)
    assert run.status == "succeeded"
    assert run.attempts == 3
    assert [entry["outcome"] for entry in run.attempt_log] == ["failed", "failed"]
    assert "planned failure 2 of 2" in run.attempt_log[1]["error"]
    assert Marker.objects.filter(label="flaky").count() == 3


def test_failure_after_max_retries(broker_settings, worker):
    handle = fusion_jobs.enqueue("t-always-fail", label="doomed")
    run = wait_for(lambda: finished(handle.run_id), timeout=30)
    assert run.status == "failed"
    assert run.attempts == 3  # max_retries=2
    assert run.error.startswith("ValueError: always fails")
    assert Marker.objects.filter(label="doomed").count() == 3


def test_timeout_is_timed_out(broker_settings, worker):
    handle = fusion_jobs.enqueue("t-sleep", seconds=5)
    run = wait_for(lambda: finished(handle.run_id), timeout=30)
    assert run.status == "timed_out"
    assert "TimeLimitExceeded" in run.error


def test_wrong_arguments_fail_without_retries(broker_settings, worker):
    """enqueue() refuses such arguments; a message still carrying them (published before the task
    changed, or crafted) fails at once on the worker, without retries."""
    run_id = str(uuid.uuid4())
    publish(get_task("t-fail-then-pass"), run_id, {"label": "x"})  # missing "failures"
    run = wait_for(lambda: JobRun.objects.filter(pk=run_id).exists() and finished(run_id))
    assert run.status == "failed"
    assert run.attempts == 1
    assert "TaskArgumentsError" in run.error and "failures" in run.error
    assert "t-fail-then-pass: t-fail-then-pass" not in run.error  # the task is named once


def test_rollback_publishes_nothing(broker_settings, worker):
    with pytest.raises(RuntimeError), transaction.atomic():
        fusion_jobs.enqueue("t-record", label="never")
        raise RuntimeError("roll back")
    marker = fusion_jobs.enqueue("t-record", label="after-rollback")
    wait_for(lambda: finished(marker.run_id))
    assert not Marker.objects.filter(label="never").exists()
    assert not JobRun.objects.filter(kwargs__label="never").exists()


def test_publish_waits_for_commit(broker_settings, worker):
    with transaction.atomic():
        handle = fusion_jobs.enqueue("t-record", label="after-commit")
        assert JobRun.objects.get(pk=handle.run_id).published_at is None
    run = wait_for(lambda: finished(handle.run_id))
    assert run.status == "succeeded"


def test_cancelled_before_run_is_skipped(broker_settings, worker):
    from fusion_jobs.recording import cancel

    with transaction.atomic():
        handle = fusion_jobs.enqueue("t-record", label="cancelled")
        assert cancel([handle.run_id]) == 1
    probe = fusion_jobs.enqueue("t-record", label="probe-after-cancel")
    wait_for(lambda: finished(probe.run_id))
    run = JobRun.objects.get(pk=handle.run_id)
    assert run.status == "cancelled"
    assert not Marker.objects.filter(label="cancelled").exists()


def test_publish_failure_falls_back_inline(settings):
    from fusion_jobs.backends.broker import reset_broker

    settings.FUSION_JOBS_BROKER_URL = "amqp://guest:sentinel-pw@127.0.0.1:1/"  # nothing listens on port 1
    reset_broker()
    try:
        handle = fusion_jobs.enqueue("t-record", label="fallback")
    finally:
        reset_broker()
    assert handle.mode == "inline"
    assert handle.status == "succeeded"
    run = JobRun.objects.get(pk=handle.run_id)
    assert (run.mode, run.status) == ("inline", "succeeded")
    assert Marker.objects.filter(label="fallback").count() == 1


def test_publish_failure_raise_policy_masks_password(settings):
    from fusion_jobs.backends.broker import reset_broker

    settings.FUSION_JOBS_BROKER_URL = "amqp://guest:sentinel-pw@127.0.0.1:1/"
    settings.FUSION_JOBS_ON_PUBLISH_ERROR = "raise"
    reset_broker()
    try:
        with pytest.raises(PublishError) as info:
            fusion_jobs.enqueue("t-record", label="raised")
    finally:
        reset_broker()
    assert "sentinel-pw" not in str(info.value)
    assert "amqp://guest:***@127.0.0.1:1/" in str(info.value)
    run = JobRun.objects.get(kwargs__label="raised")
    assert run.status == "failed" and "sentinel-pw" not in run.error
    assert not Marker.objects.filter(label="raised").exists()


def test_progress_from_a_worker(broker_settings, worker):
    handle = fusion_jobs.enqueue("t-progress", steps=3)
    run = wait_for(lambda: finished(handle.run_id))
    assert (run.progress_stage, run.progress_done, run.progress_total) == ("stepping", 3, 3)


def test_enqueue_many_publishes_a_batch(broker_settings, worker):
    handles = fusion_jobs.enqueue_many("t-record", [{"label": f"many-{i}"} for i in range(50)])
    assert len(handles) == 50 and all(h.mode == "queued" for h in handles)
    ids = [h.run_id for h in handles]
    wait_for(lambda: JobRun.objects.filter(pk__in=ids, status="succeeded").count() == 50, what="50 runs")
    assert Marker.objects.filter(label__startswith="many-").count() == 50
    assert JobRun.objects.filter(pk__in=ids, published_at__isnull=True).count() == 0
