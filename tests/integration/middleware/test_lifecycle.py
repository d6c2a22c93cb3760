"""RunLifecycle on real workers that die: the redelivered message completes and the history says what happened.

These tests run their own workers on queue "fj-crash" (the session worker serves only "default"),
so killing them hurts no other test.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import fusion_jobs
from fusion_jobs.models import JobRun
from tests.conftest import BROKER_URL, WorkerProcess, wait_for
from tests.integration.recording.test_sequences import Trail, recorded_statuses
from tests.testapp.models import Marker


def finished(run_id: str) -> JobRun | None:
    run = JobRun.objects.get(pk=run_id)
    return run if run.is_terminal else None


def consumers_on(queue: str) -> int:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(BROKER_URL))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.consumer_count)
    except pika.exceptions.ChannelClosedByBroker:
        return 0  # not declared yet: nobody consumes it
    finally:
        if connection.is_open:
            connection.close()


@pytest.fixture
def status_trail(transactional_db: Any) -> Iterator[Trail]:
    with recorded_statuses() as trail:
        yield trail


@pytest.fixture
def crash_queue_is_ours() -> None:
    """A task that kills its worker must only ever reach workers this test started."""
    if consumers_on("fj-crash"):
        pytest.fail("another worker consumes queue 'fj-crash'; only the test's own workers may")


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_sigkill_mid_run_is_redelivered_and_recorded_as_lost(
    broker_settings, make_worker, crash_queue_is_ours, status_trail
):
    first = make_worker(queues=("fj-crash",), threads=1)
    handle = fusion_jobs.enqueue("t-crashable", label="sigkill", seconds=2)
    started = wait_for(
        lambda: Marker.objects.filter(label="sigkill:start").first(), what="attempt 1 to start"
    )
    first.kill()  # SIGKILL to the whole worker: no outcome written, no ack sent
    assert first.proc is not None and first.proc.returncode == -9
    assert finished(handle.run_id) is None
    make_worker(queues=("fj-crash",), threads=1)
    run = wait_for(lambda: finished(handle.run_id), timeout=30, what="the redelivered run to finish")

    assert (run.status, run.result, run.error) == ("succeeded", "survived", "")
    assert (run.attempts, run.lost_attempts) == (2, 1)
    assert len(run.attempt_log) == 1
    lost = run.attempt_log[0]
    assert (lost["attempt"], lost["outcome"]) == (1, "lost")
    assert lost["worker"].endswith(f":{started.value['pid']}")
    assert "redelivered" in lost["error"]
    assert not run.worker.endswith(f":{started.value['pid']}")
    assert status_trail(handle.run_id) == [("queued", 0), ("running", 1), ("running", 2), ("succeeded", 2)]
    assert Marker.objects.filter(label="sigkill:start").count() == 2
    assert Marker.objects.filter(label="sigkill:end").count() == 1


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_a_task_that_kills_every_worker_fails_after_max_lost_attempts(
    broker_settings, test_db_name, crash_queue_is_ours, status_trail
):
    """Every delivery kills the worker process running it; the fourth delivery fails the run.

    Dramatiq's master stops when its worker process dies (rundramatiq restarts it after a growing
    backoff), so the test keeps fresh workers available: four boot together, and the loop starts
    another whenever none is alive, until the run is terminal or 60 s have passed.
    """
    handle = fusion_jobs.enqueue("t-kills-worker", label="poison")  # max_retries=5: irrelevant to deaths
    workers: list[WorkerProcess] = []

    def boot() -> None:
        proc = WorkerProcess(test_db_name, queues=("fj-crash",), threads=1)
        workers.append(proc)
        with contextlib.suppress(pytest.fail.Exception):
            proc.start()  # the poison can kill it before it reports ready; the loop starts another

    def alive(proc: WorkerProcess) -> bool:
        return proc.proc is not None and proc.proc.poll() is None and "dramatiq exited" not in proc.output()

    deadline = time.monotonic() + 60
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: boot(), range(4)))
        while finished(handle.run_id) is None and time.monotonic() < deadline:
            if not any(alive(proc) for proc in workers):
                boot()
            time.sleep(0.1)
        run = JobRun.objects.get(pk=handle.run_id)
        logs = "\n".join(proc.output() for proc in workers)
        assert run.is_terminal, f"run still {run.status} after 60 s; worker logs:\n{logs[-4000:]}"
    finally:
        for proc in workers:
            proc.kill()
            proc.stop()

    assert run.status == "failed"
    assert run.error.startswith("WorkerLost: the worker running this task died 3 times")
    assert (run.attempts, run.lost_attempts) == (3, 3)
    assert [entry["outcome"] for entry in run.attempt_log] == ["lost", "lost", "lost"]
    assert [entry["attempt"] for entry in run.attempt_log] == [1, 2, 3]
    assert Marker.objects.filter(label="poison").count() == 3  # three deliveries ran it; the fourth did not
    assert len({marker.value["pid"] for marker in Marker.objects.filter(label="poison")}) == 3
    assert status_trail(handle.run_id) == [
        ("queued", 0),
        ("running", 1),
        ("running", 2),
        ("running", 3),
        ("failed", 3),
    ]
