"""The worker's middleware stack on Dramatiq's StubBroker, in this process: outcomes in PostgreSQL.

``build_stack()`` (what every broker of fusion-jobs gets) runs under a real ``dramatiq.Worker``
here (``tests.support.stub_worker``), on the StubBroker instead of RabbitMQ, so the run lifecycle
is checked in seconds without a worker subprocess. What only RabbitMQ or a separate process can
show (redelivery after a kill, publisher confirms, the hard limit ending a process) stays in
tests/system.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone

from fusion_jobs import admission
from fusion_jobs.models import JobRun, RunStatus
from fusion_jobs.registry import get_task
from tests.support.stub_worker import StubWorker
from tests.testapp.models import Marker

pytestmark = pytest.mark.django_db(transaction=True)  # the batch writer commits on its own connection

TASKS = ("t-record", "t-hostile-fail", "t-always-fail", "t-sleep", "t-cron-single-flight", "t-progress")


@pytest.fixture
def stub(settings: Any) -> Iterator[StubWorker]:
    settings.FUSION_JOBS_HARD_LIMIT_GRACE = 3600  # only the soft limit acts here: never end pytest
    with StubWorker(TASKS) as worker:
        yield worker


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


def test_a_run_that_returns_is_recorded_succeeded_with_its_result(stub: StubWorker) -> None:
    run_id = stub.send("t-record", label="stub-ok", value=7)
    run = JobRun.objects.get(pk=run_id)
    assert run.status == RunStatus.SUCCEEDED
    assert (run.result["label"], run.result["value"]) == ("stub-ok", 7)
    assert run.attempts == 1 and run.finished_at is not None
    assert Marker.objects.filter(label="stub-ok").count() == 1


def test_a_run_that_raises_with_no_retries_left_is_failed_and_dead_lettered(stub: StubWorker) -> None:
    run_id = stub.send("t-hostile-fail", label="stub-fail")
    run = JobRun.objects.get(pk=run_id)
    assert run.status == RunStatus.FAILED
    assert "planned failure stub-fail" in run.error and "ValueError" in run.error
    assert [m.message_id for m in stub.dead_letters] == [run_id]


def test_a_run_that_raises_with_retries_left_waits_in_the_database(stub: StubWorker) -> None:
    run_id = stub.send("t-always-fail", label="stub-retry")
    run = JobRun.objects.get(pk=run_id)
    assert run.status == RunStatus.RETRYING
    assert run.next_attempt_at is not None and run.next_attempt_at > run.started_at
    assert run.published_at is None  # the relay publishes it when due; no delayed message is held
    assert run.attempts == 1 and [entry["outcome"] for entry in run.attempt_log] == ["failed"]
    assert not stub.dead_letters


def test_arguments_that_do_not_fit_fail_at_once_however_many_retries_are_left(stub: StubWorker) -> None:
    run_id = stub.send("t-always-fail", lable="typo")
    run = JobRun.objects.get(pk=run_id)
    assert run.status == RunStatus.FAILED and run.next_attempt_at is None
    assert "TaskArgumentsError" in run.error and "did you mean 'label'?" in run.error
    assert not Marker.objects.filter(label="typo").exists()


def test_progress_reported_by_the_task_is_on_its_run(stub: StubWorker) -> None:
    run_id = stub.send("t-progress", steps=3)
    run = JobRun.objects.get(pk=run_id)
    assert (run.status, run.result) == (RunStatus.SUCCEEDED, 3)
    assert (run.progress_stage, run.progress_done, run.progress_total) == ("stepping", 3, 3)


def test_a_run_past_its_execution_timeout_is_timed_out(stub: StubWorker) -> None:
    started = time.monotonic()
    run_id = stub.send("t-sleep", seconds=30)
    assert time.monotonic() - started < 10
    run = JobRun.objects.get(pk=run_id)
    assert run.status == RunStatus.TIMED_OUT
    assert "TimeLimitExceeded" in run.error


def test_a_single_flight_run_whose_key_is_held_is_skipped_and_never_runs(stub: StubWorker) -> None:
    task_obj = get_task("t-cron-single-flight")
    run_id = queued_row(task_obj.name, label="stub-flight")
    release = admission.acquire(task_obj, admission.flight_key(task_obj, {}), holder="another run")
    assert release is not None
    try:
        stub.send(task_obj.name, run_id, label="stub-flight")
    finally:
        release()
    run = JobRun.objects.get(pk=run_id)
    assert run.status == RunStatus.SKIPPED
    assert run.skip_reason.startswith("single-flight: another run of")
    assert run.attempts == 0 and not Marker.objects.filter(label__startswith="stub-flight").exists()
    # Released after the skip: the next run of the key goes ahead.
    second = stub.send(task_obj.name, queued_row(task_obj.name, label="stub-flight-2"), label="stub-flight-2")
    assert JobRun.objects.get(pk=second).status == RunStatus.SUCCEEDED


def test_a_message_for_a_finished_run_is_not_run_again(stub: StubWorker) -> None:
    run_id = stub.send("t-record", label="stub-once")
    stub.send("t-record", run_id, label="stub-once")
    run = JobRun.objects.get(pk=run_id)
    assert run.status == RunStatus.SUCCEEDED and run.attempts == 1
    assert Marker.objects.filter(label="stub-once").count() == 1
