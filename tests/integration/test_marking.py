"""The marking thread: runs marked published in batches, and never a run a worker already took."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from fusion_jobs import marking
from fusion_jobs.marking import IDLE_CLOSE, flush_marks, mark_later, stop_marking
from fusion_jobs.models import JobRun, RunMode, RunStatus
from fusion_jobs.recording import mark_published_late
from tests.support.processes import wait_child

pytestmark = pytest.mark.django_db(transaction=True)


def run_row(**fields: object) -> str:
    run_id = str(uuid.uuid4())
    values: dict[str, object] = {"task_name": "t-record", "queue": "default", "mode": RunMode.WORKER}
    JobRun.objects.create(id=run_id, kwargs={"label": "m"}, **{**values, **fields})
    return run_id


def published(run_id: str) -> bool:
    return JobRun.objects.get(pk=run_id).published_at is not None


@pytest.mark.parametrize("path", ["one statement", "in a transaction (ORM)"])
def test_a_late_mark_marks_only_runs_still_as_enqueued(path: str) -> None:
    fresh = run_row()
    cancelled = run_row(status=RunStatus.CANCELLED)  # cancelled after its publish: it was sent
    retrying = run_row(status=RunStatus.RETRYING, attempts=1, next_attempt_at=timezone.now())
    back_in_queue = run_row(status=RunStatus.QUEUED, attempts=1)  # taken, then put back
    parked = run_row(next_attempt_at=timezone.now() + timedelta(hours=1))
    running = run_row(status=RunStatus.RUNNING, attempts=1)
    ids = [fresh, cancelled, retrying, back_in_queue, parked, running]
    if path == "one statement":
        with CaptureQueriesContext(connection) as queries:
            mark_published_late(ids)
        assert len(queries) == 1 and "ANY(" in queries[0]["sql"]
    else:
        with transaction.atomic():
            mark_published_late(ids)
    assert published(fresh) and published(cancelled)
    assert not any(published(r) for r in (retrying, back_in_queue, parked, running))


def test_a_late_mark_skips_a_row_locked_by_a_starting_worker() -> None:
    locked, free = run_row(), run_row()
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                JobRun.objects.select_for_update().get(pk=locked)
                holding.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(5)
        started = time.monotonic()
        mark_published_late([locked, free])
        assert time.monotonic() - started < 2  # did not wait for the lock
    finally:
        release.set()
        holder.join()
    assert published(free) and not published(locked)


def test_mark_later_marks_in_the_background_and_stops_cleanly() -> None:
    ids = [run_row() for _ in range(5)]
    mark_later(ids[:2])
    mark_later(ids[2:])
    assert flush_marks(10)
    assert all(published(r) for r in ids)
    stop_marking()
    assert "fusion-jobs-marker" not in [t.name for t in threading.enumerate()]
    assert flush_marks(0)  # nothing waits any more


def other_backends() -> int:
    """Connections to this test database other than the main thread's."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


@pytest.fixture
def persistent_connections() -> Iterator[None]:
    """``CONN_MAX_AGE`` as in production (the example's 60 s): a connection outlives its batch."""
    settings_dict = connection.settings_dict
    before = settings_dict["CONN_MAX_AGE"]
    settings_dict["CONN_MAX_AGE"] = 600  # the dict every thread's new connection is built from
    stop_marking()
    yield
    stop_marking()
    settings_dict["CONN_MAX_AGE"] = before


def test_an_idle_marking_thread_holds_no_database_connection(persistent_connections: None) -> None:
    # One idle connection per process for ever (PgBouncer and max_connections pay for it), and
    # one Django's test runner cannot drop its test database past ("being accessed by other users").
    baseline = other_backends()
    mark_later([run_row()])
    assert flush_marks(10)
    deadline = time.monotonic() + IDLE_CLOSE + 5
    while other_backends() > baseline and time.monotonic() < deadline:
        time.sleep(0.1)
    assert other_backends() == baseline


def test_a_child_forked_while_another_thread_holds_the_marking_lock_can_still_mark() -> None:
    # A web server forking workers while a request thread enqueues: the lock is held at the fork.
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with marking._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(5)
    connections.close_all()  # the child must not share the test's database socket
    pid = os.fork()
    if pid == 0:
        marking.mark_later([])  # takes the lock to start the child's own marking thread
        os._exit(0)
    release.set()
    holder.join()
    assert wait_child(pid, 10, hung="the child waited for ever for a lock a thread of its parent held") == 0


def test_the_marking_thread_survives_a_connection_check_that_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    # The database down at the moment the thread checks its connection (seen under pytest-django's
    # blocker on Django 6.1): the thread must live on and mark later runs.
    stop_marking()
    calls = {"n": 0}

    def failing_check() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("database unreachable")

    monkeypatch.setattr(marking, "close_old_connections", failing_check)
    first, second = run_row(), run_row()
    mark_later([first])
    assert flush_marks(10)
    mark_later([second])
    assert flush_marks(10)
    assert calls["n"] >= 2 and published(first) and published(second)
    stop_marking()
