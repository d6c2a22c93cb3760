"""Time limits that hold: the soft limit stops pure Python; the hard limit stops a task stuck in C."""

from __future__ import annotations

import pytest

import fusion_jobs
from fusion_jobs.models import JobRun
from tests.conftest import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]


def terminal(run_id: str) -> JobRun | None:
    run = JobRun.objects.get(pk=run_id)
    return run if run.is_terminal else None


def test_pure_python_past_its_timeout_is_timed_out(broker_settings, worker):
    handle = fusion_jobs.enqueue("t-sleep", seconds=10)
    run = wait_for(lambda: terminal(handle.run_id), timeout=20)
    assert run.status == "timed_out"
    assert run.error.startswith("TimeLimitExceeded")
    assert (run.finished_at - run.started_at).total_seconds() < 5


def test_blocked_in_c_is_stopped_by_the_hard_limit_and_capacity_returns(broker_settings, make_worker):
    proc = make_worker(queues=("fj-crash",), threads=1, env={"FUSION_JOBS_HARD_LIMIT_GRACE": "1"})
    handle = fusion_jobs.enqueue("t-c-block", seconds=60)
    run = wait_for(lambda: terminal(handle.run_id), timeout=30, what="the hard limit")
    assert run.status == "timed_out"
    assert run.error.startswith("TimeoutError: HardTimeLimit")
    assert run.attempts == 1  # not retried: it would block again
    assert (run.finished_at - run.started_at).total_seconds() < 10
    wait_for(lambda: "restarting in" in proc.output(), timeout=15, what="the supervisor restart")
    # The single worker thread is free again: the next run on that queue completes.
    after = fusion_jobs.enqueue("t-crashable", label="after-hard-limit", seconds=0)
    done = wait_for(lambda: terminal(after.run_id), timeout=40, what="a run after the restart")
    assert done.status == "succeeded"
    assert JobRun.objects.get(pk=handle.run_id).status == "timed_out"  # its redelivery was skipped
