"""The worker's middleware stack on Dramatiq's StubBroker, in this process: outcomes in PostgreSQL.

``build_stack()`` (what every broker of fusion-jobs gets) runs under a real ``dramatiq.Worker``
here, on the StubBroker instead of RabbitMQ, so the run lifecycle is checked in seconds without a
worker subprocess. What only RabbitMQ or a separate process can show (redelivery after a kill,
publisher confirms, the hard limit ending a process) stays in tests/system and tests/faults.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from django.utils import timezone
from dramatiq.brokers.stub import StubBroker

from fusion_jobs import admission
from fusion_jobs.backends.broker import declare_actor
from fusion_jobs.encoder import StrictJSONEncoder
from fusion_jobs.middleware import build_stack
from fusion_jobs.models import JobRun, RunStatus
from fusion_jobs.registry import get_task
from tests.testapp.models import Marker

pytestmark = pytest.mark.django_db(transaction=True)  # the batch writer commits on its own connection

TASKS = ("t-record", "t-hostile-fail", "t-always-fail", "t-sleep", "t-cron-single-flight", "t-progress")


@pytest.fixture
def stub(settings: Any) -> Iterator[StubBroker]:
    """A StubBroker with fusion-jobs' stack and the test tasks declared, and a worker consuming it."""
    settings.FUSION_JOBS_HARD_LIMIT_GRACE = 3600  # only the soft limit acts here: never end pytest
    encoder, excepthook = dramatiq.get_encoder(), threading.excepthook
    dramatiq.set_encoder(StrictJSONEncoder())
    broker = StubBroker(middleware=build_stack())
    broker.fail_fast_default = False  # failed runs are dead-lettered; the test reads their rows
    for name in TASKS:
        declare_actor(get_task(name), broker)
    broker.emit_after("process_boot")  # as a worker process does: TimeLimit starts its timer thread
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50)
    worker.start()
    try:
        yield broker
    finally:
        worker.stop()
        broker.close()
        dramatiq.set_encoder(encoder)
        threading.excepthook = excepthook  # HardTimeLimit hooks thread deaths at worker boot


def send(broker: StubBroker, task_name: str, run_id: str | None = None, **kwargs: Any) -> str:
    """Publish a message as fusion-jobs does, and wait until the worker is done with it."""
    task_obj = get_task(task_name)
    run_id = run_id or str(uuid.uuid4())
    broker.enqueue(
        dramatiq.Message(
            queue_name=task_obj.effective_queue,
            actor_name=task_obj.name,
            args=(),
            kwargs=kwargs,
            options={},
            message_id=run_id,
            message_timestamp=int(time.time() * 1000),
        )
    )
    broker.join(task_obj.effective_queue, timeout=20_000)
    return run_id


def queued_row(task_name: str, **kwargs: Any) -> str:
    task_obj = get_task(task_name)
    row = JobRun.objects.create(
        task_name=task_obj.name,
        queue=task_obj.effective_queue,
        kwargs=kwargs,
        max_retries=task_obj.effective_max_retries,
        execution_timeout=task_obj.effective_timeout,
        published_at=timezone.now(),
    )
    return str(row.pk)


def test_a_run_that_returns_is_recorded_succeeded_with_its_result(stub: StubBroker) -> None:
    run_id = send(stub, "t-record", label="stub-ok", value=7)
    run = JobRun.objects.get(pk=run_id)
    assert run.status == RunStatus.SUCCEEDED
    assert (run.result["label"], run.result["value"]) == ("stub-ok", 7)
    assert run.attempts == 1 and run.finished_at is not None
    assert Marker.objects.filter(label="stub-ok").count() == 1


def test_a_run_that_raises_with_no_retries_left_is_failed_and_dead_lettered(stub: StubBroker) -> None:
    run_id = send(stub, "t-hostile-fail", label="stub-fail")
    run = JobRun.objects.get(pk=run_id)
    assert run.status == RunStatus.FAILED
    assert "planned failure stub-fail" in run.error and "ValueError" in run.error
    assert [m.message_id for m in stub.dead_letters] == [run_id]


def test_a_run_that_raises_with_retries_left_waits_in_the_database(stub: StubBroker) -> None:
    run_id = send(stub, "t-always-fail", label="stub-retry")
    run = JobRun.objects.get(pk=run_id)
    assert run.status == RunStatus.RETRYING
    assert run.next_attempt_at is not None and run.next_attempt_at > run.started_at
    assert run.published_at is None  # the relay publishes it when due; no delayed message is held
    assert run.attempts == 1 and [entry["outcome"] for entry in run.attempt_log] == ["failed"]
    assert not stub.dead_letters


def test_arguments_that_do_not_fit_fail_at_once_however_many_retries_are_left(stub: StubBroker) -> None:
    run_id = send(stub, "t-always-fail", lable="typo")
    run = JobRun.objects.get(pk=run_id)
    assert run.status == RunStatus.FAILED and run.next_attempt_at is None
    assert "TaskArgumentsError" in run.error and "did you mean 'label'?" in run.error
    assert not Marker.objects.filter(label="typo").exists()


def test_progress_reported_by_the_task_is_on_its_run(stub: StubBroker) -> None:
    run_id = send(stub, "t-progress", steps=3)
    run = JobRun.objects.get(pk=run_id)
    assert (run.status, run.result) == (RunStatus.SUCCEEDED, 3)
    assert (run.progress_stage, run.progress_done, run.progress_total) == ("stepping", 3, 3)


def test_a_run_past_its_execution_timeout_is_timed_out(stub: StubBroker) -> None:
    started = time.monotonic()
    run_id = send(stub, "t-sleep", seconds=30)
    assert time.monotonic() - started < 10
    run = JobRun.objects.get(pk=run_id)
    assert run.status == RunStatus.TIMED_OUT
    assert "TimeLimitExceeded" in run.error


def test_a_single_flight_run_whose_key_is_held_is_skipped_and_never_runs(stub: StubBroker) -> None:
    task_obj = get_task("t-cron-single-flight")
    run_id = queued_row(task_obj.name, label="stub-flight")
    release = admission.acquire(task_obj, admission.flight_key(task_obj, {}), holder="another run")
    assert release is not None
    try:
        send(stub, task_obj.name, run_id, label="stub-flight")
    finally:
        release()
    run = JobRun.objects.get(pk=run_id)
    assert run.status == RunStatus.SKIPPED
    assert run.skip_reason.startswith("single-flight: another run of")
    assert run.attempts == 0 and not Marker.objects.filter(label__startswith="stub-flight").exists()
    # Released after the skip: the next run of the key goes ahead.
    second = send(
        stub, task_obj.name, queued_row(task_obj.name, label="stub-flight-2"), label="stub-flight-2"
    )
    assert JobRun.objects.get(pk=second).status == RunStatus.SUCCEEDED


def test_a_message_for_a_finished_run_is_not_run_again(stub: StubBroker) -> None:
    run_id = send(stub, "t-record", label="stub-once")
    send(stub, "t-record", run_id, label="stub-once")
    run = JobRun.objects.get(pk=run_id)
    assert run.status == RunStatus.SUCCEEDED and run.attempts == 1
    assert Marker.objects.filter(label="stub-once").count() == 1
