"""Run recording: the status sequence each path writes, attempt fencing, cancel, and the stuck-run sweeper.

The sequences are observed by a PostgreSQL trigger that logs every insert and every change of
``status`` or ``attempts`` on ``fusion_jobs_jobrun``, so the worker's writes (another process)
are seen exactly as they were committed, not sampled by polling.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

import fusion_jobs
from fusion_jobs.models import JobRun
from fusion_jobs.recording import (
    Attempt,
    Skip,
    cancel,
    finish_failure,
    finish_success,
    mark_retrying,
    start_attempt,
    sweep_stuck,
    transitions,
    write_progress,
)
from tests.conftest import wait_for
from tests.testapp.models import Marker

Trail = Callable[[str], list[tuple[str, int]]]

AUDIT_DDL = """
CREATE TABLE fj_test_status_audit (seq bigserial PRIMARY KEY, run_id uuid NOT NULL, status text, attempts int);
CREATE FUNCTION fj_test_status_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status OR NEW.attempts IS DISTINCT FROM OLD.attempts THEN
    INSERT INTO fj_test_status_audit (run_id, status, attempts) VALUES (NEW.id, NEW.status, NEW.attempts);
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER fj_test_status_audit AFTER INSERT OR UPDATE ON fusion_jobs_jobrun
  FOR EACH ROW EXECUTE FUNCTION fj_test_status_audit();
"""
AUDIT_DROP = """
DROP TRIGGER IF EXISTS fj_test_status_audit ON fusion_jobs_jobrun;
DROP FUNCTION IF EXISTS fj_test_status_audit();
DROP TABLE IF EXISTS fj_test_status_audit;
"""


@contextmanager
def recorded_statuses() -> Iterator[Trail]:
    """Install the audit trigger; yield ``trail(run_id)`` -> every (status, attempts), in commit order."""
    with connection.cursor() as cursor:
        cursor.execute(AUDIT_DROP)
        cursor.execute(AUDIT_DDL)

    def trail(run_id: str) -> list[tuple[str, int]]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT status, attempts FROM fj_test_status_audit WHERE run_id = %s ORDER BY seq", [run_id]
            )
            return [(status, attempts) for status, attempts in cursor.fetchall()]

    try:
        yield trail
    finally:
        with connection.cursor() as cursor:
            cursor.execute(AUDIT_DROP)


@pytest.fixture
def status_trail(transactional_db: Any) -> Iterator[Trail]:
    with recorded_statuses() as trail:
        yield trail


def finished(run_id: str) -> JobRun | None:
    run = JobRun.objects.get(pk=run_id)
    return run if run.is_terminal else None


def new_run(**fields: Any) -> JobRun:
    defaults: dict[str, Any] = {"task_name": "t-record", "kwargs": {"label": "x"}}
    return JobRun.objects.create(**{**defaults, **fields})


# --- The status sequence of each path -------------------------------------------------------


@pytest.mark.broker
def test_worker_success_sequence(broker_settings, worker, status_trail):
    handle = fusion_jobs.enqueue("t-record", label="seq-ok")
    wait_for(lambda: finished(handle.run_id), what="the run to finish")
    assert status_trail(handle.run_id) == [("queued", 0), ("running", 1), ("succeeded", 1)]


@pytest.mark.broker
def test_worker_failure_with_retries_sequence(broker_settings, worker, status_trail):
    handle = fusion_jobs.enqueue("t-always-fail", label="seq-fail")  # max_retries=2
    run = wait_for(lambda: finished(handle.run_id), timeout=30, what="the run to fail")
    assert status_trail(handle.run_id) == [
        ("queued", 0),
        ("running", 1),
        ("retrying", 1),
        ("running", 2),
        ("retrying", 2),
        ("running", 3),
        ("failed", 3),
    ]
    assert [entry["outcome"] for entry in run.attempt_log] == ["failed", "failed"]
    assert [entry["attempt"] for entry in run.attempt_log] == [1, 2]
    assert run.next_attempt_at is None and run.finished_at is not None
    assert run.error.startswith("ValueError: always fails")


@pytest.mark.broker
def test_worker_timeout_sequence(broker_settings, worker, status_trail):
    handle = fusion_jobs.enqueue("t-sleep", seconds=5)  # 1 s limit, no retries
    run = wait_for(lambda: finished(handle.run_id), timeout=30, what="the run to time out")
    assert status_trail(handle.run_id) == [("queued", 0), ("running", 1), ("timed_out", 1)]
    assert run.started_at and run.finished_at
    assert 0.9 <= (run.finished_at - run.started_at).total_seconds() < 5


@pytest.mark.broker
def test_cancelled_before_run_never_runs(broker_settings, worker, status_trail):
    with transaction.atomic():
        handle = fusion_jobs.enqueue("t-record", label="seq-cancelled")
        assert cancel([handle.run_id]) == 1
    wait_for(
        lambda: f"skipping t-record run {handle.run_id}: run is already cancelled" in worker.output(),
        what="the worker to receive and skip the cancelled run",
    )
    assert status_trail(handle.run_id) == [("queued", 0), ("cancelled", 0)]
    run = wait_for(  # marked by the enqueuing process's marking thread (fusion_jobs.marking)
        lambda: JobRun.objects.filter(pk=handle.run_id, published_at__isnull=False).first(),
        what="the cancelled run to be marked published",
    )
    assert run.started_at is None and run.skip_reason == "cancelled"
    assert not Marker.objects.filter(label="seq-cancelled").exists()


def test_inline_success_and_failure_sequences(status_trail):
    # Outside a transaction the row is written already started: one write to start, one to end.
    ok = fusion_jobs.enqueue("t-record", label="seq-inline")
    bad = fusion_jobs.enqueue("t-always-fail", label="seq-inline-bad")
    assert status_trail(ok.run_id) == [("running", 1), ("succeeded", 1)]
    assert status_trail(bad.run_id) == [("running", 1), ("failed", 1)]
    run = JobRun.objects.get(pk=bad.run_id)
    assert (run.mode, run.attempts, run.error) == (
        "inline",
        1,
        "ValueError: always fails <script>alert('seq-inline-bad')</script>",
    )
    assert run.started_at is not None and run.finished_at is not None and run.worker


def test_inline_sequence_in_a_transaction_waits_for_the_commit(status_trail):
    with transaction.atomic():
        handle = fusion_jobs.enqueue("t-record", label="seq-inline-atomic")
        assert JobRun.objects.get(pk=handle.run_id).status == "queued"
    assert status_trail(handle.run_id) == [("queued", 0), ("running", 1), ("succeeded", 1)]


# --- Fencing: an older attempt never overwrites a newer one ----------------------------------


@pytest.mark.django_db
def test_a_stale_attempt_cannot_overwrite_the_newer_one():
    run = new_run()
    first = start_attempt(str(run.pk), task_name="t-record")
    assert isinstance(first, Attempt) and first.attempt == 1
    # The worker running attempt 1 "dies"; the broker redelivers and attempt 2 starts.
    second = start_attempt(str(run.pk), task_name="t-record", redelivered=True)
    assert isinstance(second, Attempt) and second.attempt == 2
    write_progress(second, "stage-2", 1, 2)

    assert finish_success(first, {"from": "attempt 1"}) is False
    assert finish_failure(first, RuntimeError("late failure of attempt 1")) is False
    assert mark_retrying(first, RuntimeError("late retry of attempt 1"), 1.0, outcome="failed") is False
    write_progress(first, "stage-1", 9, 9)
    run.refresh_from_db()
    assert (run.status, run.attempts, run.lost_attempts) == ("running", 2, 1)
    assert (run.result, run.error, run.progress_stage, run.progress_done) == (None, "", "stage-2", 1)
    assert [entry["outcome"] for entry in run.attempt_log] == ["lost"]

    assert finish_success(second, {"from": "attempt 2"}) is True
    assert finish_failure(second, RuntimeError("after the end")) is False
    run.refresh_from_db()
    assert (run.status, run.result, run.error) == ("succeeded", {"from": "attempt 2"}, "")
    assert isinstance(start_attempt(str(run.pk), task_name="t-record", redelivered=True), Skip)


@pytest.mark.django_db
def test_a_duplicate_delivery_is_skipped_not_counted_as_lost():
    run = new_run()
    assert isinstance(start_attempt(str(run.pk), task_name="t-record"), Attempt)
    duplicate = start_attempt(str(run.pk), task_name="t-record", redelivered=False)
    assert isinstance(duplicate, Skip) and "duplicate" in duplicate.reason
    run.refresh_from_db()
    assert (run.attempts, run.lost_attempts, run.attempt_log) == (1, 0, [])


@pytest.mark.django_db
def test_lost_attempts_are_capped(settings):
    settings.FUSION_JOBS_MAX_LOST_ATTEMPTS = 2
    run = new_run()
    assert isinstance(start_attempt(str(run.pk), task_name="t-record"), Attempt)
    assert isinstance(start_attempt(str(run.pk), task_name="t-record", redelivered=True), Attempt)
    gave_up = start_attempt(str(run.pk), task_name="t-record", redelivered=True)
    assert isinstance(gave_up, Skip) and "lost 2 times" in gave_up.reason
    run.refresh_from_db()
    assert (run.status, run.attempts, run.lost_attempts) == ("failed", 2, 2)
    assert run.error.startswith("WorkerLost:") and run.finished_at is not None
    assert [entry["outcome"] for entry in run.attempt_log] == ["lost", "lost"]


@pytest.mark.django_db
def test_a_message_without_a_row_gets_one():
    run_id = str(uuid.uuid4())
    started = start_attempt(run_id, task_name="t-echo", kwargs={"a": 1}, queue="default")
    assert isinstance(started, Attempt) and started.attempt == 1
    run = JobRun.objects.get(pk=run_id)
    assert (run.status, run.task_name, run.kwargs, run.enqueued_by) == (
        "running",
        "t-echo",
        {"a": 1},
        "message without a run row",
    )


@pytest.mark.django_db
def test_a_row_made_for_a_message_without_one_keeps_its_tasks_limits(settings):
    """Plain Dramatiq senders (django-dramatiq projects) leave no row: the sweeper must still see the
    task's own timeout, not the default, or it fails a long run that is still running."""
    settings.FUSION_JOBS_DEFAULT_EXECUTION_TIMEOUT = 1.0
    settings.FUSION_JOBS_STUCK_GRACE_SECONDS = 1.0
    run_id = str(uuid.uuid4())
    start_attempt(run_id, task_name="t-fail-then-pass", kwargs={"key": "k"}, queue="default")
    run = JobRun.objects.get(pk=run_id)
    assert (run.max_retries, run.execution_timeout) == (3, 30.0)
    twenty_ago = timezone.now() - timedelta(seconds=20)
    JobRun.objects.filter(pk=run_id).update(started_at=twenty_ago, heartbeat_at=twenty_ago)
    assert sweep_stuck() == 0  # 20 s silent is within the task's 30 s (+ grace)
    assert JobRun.objects.get(pk=run_id).status == "running"


@pytest.mark.django_db
def test_cancel_moves_only_queued_and_retrying_runs():
    runs = {
        status: new_run(status=status) for status in ("queued", "retrying", "running", "succeeded", "failed")
    }
    assert cancel([str(r.pk) for r in runs.values()]) == 2
    after = {status: JobRun.objects.get(pk=r.pk) for status, r in runs.items()}
    assert after["queued"].status == after["retrying"].status == "cancelled"
    assert after["queued"].finished_at is not None and after["queued"].skip_reason == "cancelled"
    assert [after[s].status for s in ("running", "succeeded", "failed")] == ["running", "succeeded", "failed"]
    skipped = start_attempt(str(runs["queued"].pk), task_name="t-record")
    assert isinstance(skipped, Skip) and "cancelled" in skipped.reason


# --- The stuck-run sweeper ----------------------------------------------------------------------


@pytest.mark.django_db
def test_sweeper_fails_silent_runs_past_timeout_plus_grace(settings):
    settings.FUSION_JOBS_STUCK_GRACE_SECONDS = 60
    settings.FUSION_JOBS_DEFAULT_EXECUTION_TIMEOUT = 600
    now = timezone.now()
    ago = lambda seconds: now - timedelta(seconds=seconds)  # noqa: E731
    stuck = new_run(status="running", attempts=1, execution_timeout=30, started_at=ago(200), worker="h:1")
    beating = new_run(
        status="running", attempts=1, execution_timeout=30, started_at=ago(200), heartbeat_at=ago(10)
    )
    long_job = new_run(status="running", attempts=1, execution_timeout=3600, started_at=ago(200))
    default_timeout = new_run(status="running", attempts=2, execution_timeout=None, started_at=ago(700))
    default_not_yet = new_run(status="running", attempts=1, execution_timeout=None, started_at=ago(500))
    queued_old = new_run(status="queued", enqueued_at=ago(10_000))
    done_old = new_run(status="succeeded", started_at=ago(10_000), finished_at=ago(9_000))

    assert sweep_stuck(now=now) == 2
    for run in (stuck, default_timeout):
        run.refresh_from_db()
        assert (run.status, run.finished_at) == ("failed", now)
        assert run.error.startswith("WorkerLost: no sign of life for")
        assert run.lost_attempts == 1
        assert [entry["outcome"] for entry in run.attempt_log] == ["lost"]
    assert stuck.attempt_log[0]["worker"] == "h:1" and stuck.attempt_log[0]["attempt"] == 1
    for run, status in (
        (beating, "running"),
        (long_job, "running"),
        (default_not_yet, "running"),
        (queued_old, "queued"),
        (done_old, "succeeded"),
    ):
        run.refresh_from_db()
        assert run.status == status
    assert sweep_stuck(now=now) == 0  # idempotent


@pytest.mark.django_db
def test_sweeper_write_is_fenced_by_the_attempt(settings, monkeypatch):
    """A redelivery that starts a new attempt between the sweeper's read and its write wins."""
    settings.FUSION_JOBS_STUCK_GRACE_SECONDS = 10
    now = timezone.now()
    run = new_run(status="running", attempts=1, execution_timeout=5, started_at=now - timedelta(seconds=60))
    real_log_entry = transitions.log_entry

    def redelivered_meanwhile(row: JobRun, *args: Any) -> dict[str, Any]:
        monkeypatch.setattr(transitions, "log_entry", real_log_entry)
        fresh = start_attempt(str(row.pk), task_name="t-record", redelivered=True)
        assert isinstance(fresh, Attempt) and fresh.attempt == 2
        return real_log_entry(row, *args)

    monkeypatch.setattr(transitions, "log_entry", redelivered_meanwhile)
    assert sweep_stuck(now=now) == 0
    run.refresh_from_db()
    assert (run.status, run.attempts, run.lost_attempts) == ("running", 2, 1)
    assert run.error == ""


@pytest.mark.django_db(transaction=True)
def test_sweep_stuck_task_runs_the_sweeper(settings):
    settings.FUSION_JOBS_STUCK_GRACE_SECONDS = 1
    stuck = new_run(
        status="running", attempts=1, execution_timeout=1, started_at=timezone.now() - timedelta(seconds=30)
    )
    handle = fusion_jobs.enqueue("fusion-jobs-sweep-stuck")
    assert (handle.status, handle.result) == ("succeeded", {"marked": 1})
    stuck.refresh_from_db()
    assert stuck.status == "failed"
