"""Messages crafted by anyone who can publish to the vhost: each is dead-lettered with a failed run
saying why, never executed, and the worker's threads go on consuming."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

import fusion_jobs
from fusion_jobs.models import JobRun
from tests.conftest import WorkerProcess, purge_queues, wait_for
from tests.system.faults.hostile import QUEUE, message, message_count, publish
from tests.testapp.models import Marker

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]

XQ = f"{QUEUE}.XQ"


@pytest.fixture
def hostile_worker(make_worker: Callable[..., WorkerProcess], broker_settings: str) -> WorkerProcess:
    purge_queues(queues=(QUEUE,))
    return make_worker(queues=(QUEUE,), processes=1, threads=4)


def rejected(run_id: str, *, timeout: float = 20.0) -> JobRun:
    """The failed run a rejected message left, once its message is in the dead-letter queue."""
    run = wait_for(
        lambda: JobRun.objects.filter(pk=run_id, status="failed").first(),
        timeout=timeout,
        what=f"run {run_id} to be recorded failed",
    )
    assert run.error.startswith("MalformedMessage:"), run.error
    return run


def still_consuming(label: str) -> None:
    """A normal run after the hostile ones succeeds: the worker's threads are alive."""
    handle = fusion_jobs.enqueue("t-hostile-record", label=label)
    wait_for(
        lambda: JobRun.objects.filter(pk=handle.run_id, status="succeeded").exists(),
        timeout=30,
        what="a normal run after the hostile messages",
    )


def test_throws_as_a_string_cannot_kill_worker_threads(hostile_worker):
    bodies = [
        message("t-hostile-fail", {"label": f"throws-{i}"}, options={"throws": "ValueError"})
        for i in range(6)
    ]
    publish(*bodies)
    for body in bodies:
        run = rejected(body["message_id"])
        assert "throws" in run.error
    still_consuming("after-throws")
    assert not Marker.objects.filter(label__startswith="throws-").exists()
    assert message_count(XQ) == len(bodies)


def test_a_message_id_that_is_not_a_uuid_never_runs(hostile_worker):
    publish(message("t-hostile-record", {"label": "not-uuid"}, message_id="not-a-uuid"))
    run = wait_for(
        lambda: JobRun.objects.filter(status="failed", error__contains="'not-a-uuid'").first(),
        what="a failed run naming the bad id",
    )
    assert run.error.startswith("MalformedMessage:") and "message_id" in run.error
    still_consuming("after-not-uuid")
    assert not Marker.objects.filter(label="not-uuid:start").exists()
    assert message_count(XQ) == 1
    # One line says why; Dramatiq's own decode-failure traceback is dropped.
    assert hostile_worker.output().count("rejecting a message to the dead-letter queue") == 1
    assert "Failed to decode message" not in hostile_worker.output()


@pytest.mark.parametrize("retries", ["two", -5, 1.5, None, True])
def test_retries_of_the_wrong_type_or_range_never_run(hostile_worker, retries):
    body = message("t-hostile-record", {"label": "bad-retries"}, options={"retries": retries})
    publish(body)
    run = rejected(body["message_id"])
    assert "retries" in run.error
    still_consuming("after-bad-retries")
    assert not Marker.objects.filter(label="bad-retries:start").exists()


@pytest.mark.parametrize("text", ["nul\u0000byte", "lone \ud800 surrogate"], ids=["nul", "surrogate"])
def test_strings_postgresql_cannot_store_are_a_bad_message_not_an_outage(hostile_worker, text):
    body = message("t-hostile-record", {"label": "pg-hostile", "note": {"deep": [text]}})
    publish(body)
    run = rejected(body["message_id"])
    assert "kwargs['note']['deep'][0]" in run.error
    still_consuming("after-pg-hostile")
    assert not Marker.objects.filter(label="pg-hostile:start").exists()
    assert "retrying it later" not in hostile_worker.output()


def test_a_time_limit_option_cannot_lengthen_the_task_limit(hostile_worker):
    body = message("t-hostile-sleep", {"label": "long-limit", "seconds": 4}, options={"time_limit": 60_000})
    publish(body)
    run = rejected(body["message_id"])
    assert "time_limit" in run.error
    still_consuming("after-time-limit")
    assert not Marker.objects.filter(label="long-limit").exists()


@pytest.mark.parametrize("option", ["max_retries", "retry_when", "min_backoff", "pipe_target", "callbacks"])
def test_no_other_option_is_accepted(hostile_worker, option):
    body = message("t-hostile-fail", {"label": f"opt-{option}"}, options={option: 100})
    publish(body)
    run = rejected(body["message_id"])
    assert option in run.error
    assert not Marker.objects.filter(label=f"opt-{option}").exists()


def test_a_message_over_the_payload_limit_is_dead_lettered_not_recorded(hostile_worker):
    body = message("t-hostile-record", {"label": "huge", "blob": "x" * 20_000_000})
    publish(body)
    run = rejected(body["message_id"], timeout=60)
    assert "MAX_PAYLOAD_BYTES" in run.error
    assert len(str(run.kwargs)) < 2_000
    still_consuming("after-huge")
    assert not Marker.objects.filter(label="huge:start").exists()
    assert message_count(XQ) == 1


def test_a_queue_name_other_than_the_queue_it_came_from_is_rejected(hostile_worker):
    body = message("t-hostile-record", {"label": "elsewhere"}, queue_name="fj-somewhere-else")
    publish(body)
    run = rejected(body["message_id"])
    assert "queue" in run.error
    still_consuming("after-elsewhere")
    assert not Marker.objects.filter(label="elsewhere:start").exists()


def test_extra_args_and_fields_are_rejected(hostile_worker):
    with_args = message("t-hostile-record", {"label": "with-args"}, args=["positional"])
    extra = message("t-hostile-record", {"label": "extra-field"}, priority=10)
    publish(with_args, extra)
    assert "args" in rejected(with_args["message_id"]).error
    assert "priority" in rejected(extra["message_id"]).error
    assert not Marker.objects.filter(label__in=["with-args:start", "extra-field:start"]).exists()


def test_a_rejected_copy_of_a_finished_run_leaves_it_as_it_was(hostile_worker):
    handle = fusion_jobs.enqueue("t-hostile-record", label="kept")
    wait_for(lambda: JobRun.objects.filter(pk=handle.run_id, status="succeeded").exists(), what="the run")
    publish(message("t-hostile-record", {"label": "kept"}, message_id=handle.run_id, options={"throws": "x"}))
    copy = wait_for(
        lambda: JobRun.objects.filter(error__contains=handle.run_id).exclude(pk=handle.run_id).first(),
        what="the rejected copy's own failed run",
    )
    assert copy.status == "failed" and "throws" in copy.error
    assert JobRun.objects.get(pk=handle.run_id).status == "succeeded"
    assert uuid.UUID(str(copy.pk)) != uuid.UUID(handle.run_id)


def test_a_worker_thread_that_dies_records_its_run_and_its_process_is_replaced(hostile_worker):
    handle = fusion_jobs.enqueue("t-hostile-kill-thread", label="thread-killer")
    run = wait_for(
        lambda: JobRun.objects.filter(pk=handle.run_id, finished_at__isnull=False).first(),
        timeout=30,
        what="the run held by the dead thread to be recorded",
    )
    assert run.status == "failed" and run.error.startswith("RuntimeError: WorkerThreadDied"), run.error
    wait_for(lambda: "restarting this worker process" in hostile_worker.output(), what="the process to end")
    still_consuming("after-thread-death")  # a fresh process took its place
    assert Marker.objects.filter(label="thread-killer").count() == 1
    assert JobRun.objects.get(pk=handle.run_id).status == "failed"


@pytest.mark.parametrize("priority", [1000, -1])
def test_a_broker_priority_out_of_range_is_rejected_not_a_consumer_loop(hostile_worker, priority):
    """On the delay queue with an eta already past, Dramatiq republishes the message with its
    ``broker_priority`` as the AMQP priority (one octet): 1000 or -1 can't be encoded, the error
    escaped the consumer thread, and the unacked message came back in a loop."""
    body = message(
        "t-hostile-record",
        {"label": f"prio-{priority}"},
        queue_name=f"{QUEUE}.DQ",
        options={"eta": 1, "broker_priority": priority},
    )
    publish(body, queue=f"{QUEUE}.DQ")
    run = rejected(body["message_id"])
    assert "broker_priority" in run.error
    still_consuming(f"after-prio-{priority}")
    assert not Marker.objects.filter(label=f"prio-{priority}:start").exists()
    assert "Consumer encountered an unexpected error" not in hostile_worker.output()


def test_a_message_timestamp_no_float_can_hold_is_rejected_before_it_starts(hostile_worker):
    """It used to pass the checks, be recorded ``running``, then break the metrics hook's queue
    wait (OverflowError): a traceback, the run failed "after its start", and a second failed row."""
    body = message("t-hostile-record", {"label": "huge-ts"}, message_timestamp=10**400)
    publish(body)
    run = rejected(body["message_id"])
    assert "message_timestamp" in run.error and run.attempts == 0
    still_consuming("after-huge-ts")
    assert (
        not JobRun.objects.filter(error__contains=body["message_id"]).exclude(pk=body["message_id"]).exists()
    )
    assert not Marker.objects.filter(label="huge-ts:start").exists()
