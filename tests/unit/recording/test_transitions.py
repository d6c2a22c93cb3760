"""The run's state machine on rows in memory: no database."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from fusion_jobs.models import JobRun
from fusion_jobs.recording.transitions import (
    TRACEBACK_LIMIT,
    Attempt,
    EndOp,
    Skip,
    StartOp,
    apply_end,
    apply_start,
    describe_exception,
    end_op_retry,
    new_row_for,
)

NOW = timezone.now()


def row(**fields):
    return JobRun(task_name="t", **fields)


def test_a_queued_run_starts_its_first_attempt_and_counts_as_published():
    run = row(progress_stage="old", progress_done=3)
    op = StartOp(str(run.pk), "t", retries_done=2)
    fields = apply_start(op, run, NOW)
    assert op.outcome == Attempt(str(run.pk), 1, "t", 2)
    assert (run.status, run.attempts, run.started_at, run.published_at) == ("running", 1, NOW, NOW)
    assert (run.progress_stage, run.progress_done) == ("", None)
    assert {"status", "attempts", "published_at", "progress_stage"} <= fields


def test_a_duplicate_delivery_is_skipped_and_a_redelivery_records_a_lost_attempt(settings):
    settings.FUSION_JOBS_MAX_LOST_ATTEMPTS = 2
    run = row(status="running", attempts=1, started_at=NOW - timedelta(seconds=5), worker="h:1")
    duplicate = StartOp(str(run.pk), "t")
    assert apply_start(duplicate, run, NOW) == set()
    assert isinstance(duplicate.outcome, Skip) and "duplicate" in duplicate.outcome.reason

    redelivered = StartOp(str(run.pk), "t", redelivered=True)
    apply_start(redelivered, run, NOW)
    assert redelivered.outcome == Attempt(str(run.pk), 2, "t")
    assert [(e["attempt"], e["outcome"], e["worker"]) for e in run.attempt_log] == [(1, "lost", "h:1")]

    again = StartOp(str(run.pk), "t", redelivered=True)
    fields = apply_start(again, run, NOW)
    assert isinstance(again.outcome, Skip) and (run.status, run.lost_attempts) == ("failed", 2)
    assert {"status", "finished_at", "error"} <= fields and run.error.startswith("WorkerLost")


def test_a_finished_run_is_never_started_again():
    op = StartOp("x", "t")
    assert apply_start(op, row(status="cancelled"), NOW) == set()
    assert op.outcome == Skip("run is already cancelled")


def test_an_end_is_fenced_by_status_and_attempt():
    run = row(status="running", attempts=2)
    for stale in (Attempt(str(run.pk), 1, "t"), Attempt("gone", 2, "t")):
        op = EndOp(stale, "succeeded", result=1)
        assert apply_end(op, run if stale.run_id != "gone" else None, NOW) == set()
        assert op.outcome is False
    assert run.status == "running"

    op = EndOp(Attempt(str(run.pk), 2, "t"), "succeeded", result={"a": 1})
    assert apply_end(op, run, NOW) == {"status", "error", "traceback", "finished_at", "result"}
    assert (op.outcome, run.status, run.result, run.finished_at) == (True, "succeeded", {"a": 1}, NOW)


def test_a_retry_waits_unpublished_with_its_attempt_logged():
    run = row(status="running", attempts=1, published_at=NOW, started_at=NOW)
    op = end_op_retry(Attempt(str(run.pk), 1, "t"), RuntimeError("again"), 10, outcome="failed")
    apply_end(op, run, NOW)
    assert (run.status, run.published_at, run.finished_at) == ("retrying", None, None)
    assert run.next_attempt_at is not None and run.next_attempt_at > NOW
    assert [(e["outcome"], e["error"]) for e in run.attempt_log] == [("failed", "RuntimeError: again")]


def test_a_message_without_a_row_gets_one_running_its_first_attempt():
    op = StartOp("5f0c4a7e-0000-4000-8000-000000000001", "unknown-task", queue="q", kwargs={"a": 1})
    new = new_row_for(op, NOW)
    assert op.outcome == Attempt(op.run_id, 1, "unknown-task")
    assert (new.status, new.attempts, new.queue, new.kwargs, new.max_retries) == (
        "running",
        1,
        "q",
        {"a": 1},
        0,
    )


def test_an_exception_is_described_storably_and_capped(settings):
    settings.FUSION_JOBS_BROKER_URL = "amqp://u:s3cret@host/v"

    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError

    message, _trace = describe_exception(Broken())
    assert message == "Broken: <str() of the exception failed>"
    message, trace = describe_exception(ValueError("amqp://u:s3cret@host/v \x00" + "x" * 30_000))
    assert "s3cret" not in message and "\x00" not in message and len(message) <= 2_000
    assert "s3cret" not in trace and len(trace) <= TRACEBACK_LIMIT + 3
