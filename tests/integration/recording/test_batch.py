"""Batches of transitions as a worker's writer applies them: one statement for many runs.

Run outside a test transaction (``transaction=True``), so the statements are the autocommit ones a
worker uses: on PostgreSQL the prepared, array-shaped start and outcome statements (and the
combined one when a batch holds both), and with ``FUSION_JOBS_PREPARED_STATEMENTS`` off the same
SQL bound on the client.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from fusion_jobs.models import JobRun
from fusion_jobs.recording import (
    Attempt,
    EndOp,
    Skip,
    StartOp,
    apply_batch,
    end_op_failure,
    end_op_success,
)
from fusion_jobs.recording.sql import prepares
from fusion_jobs.recording.writer import BatchWriter

pytestmark = pytest.mark.django_db(transaction=True)

AWKWARD = 'quote " comma , brace {x} backslash \\ newline\n unicode ✓ NUL-free'


def new_runs(count: int, **fields: Any) -> list[str]:
    rows = [JobRun(task_name="t-record", kwargs={"i": i}, **fields) for i in range(count)]
    JobRun.objects.bulk_create(rows)
    return [str(row.pk) for row in rows]


@pytest.fixture(params=[True, False], ids=["prepared", "client-bound"])
def prepared(request, settings):
    settings.FUSION_JOBS_PREPARED_STATEMENTS = request.param
    return request.param


def test_a_batch_of_starts_then_a_batch_of_starts_and_outcomes(prepared):
    first, second = new_runs(5), new_runs(4)
    starts = [StartOp(run_id, "t-record") for run_id in first]
    apply_batch(starts)
    attempts = [op.outcome for op in starts]
    assert all(isinstance(a, Attempt) and a.attempt == 1 for a in attempts)

    results: list[Any] = [{"nested": [1, {"a": None}], "text": AWKWARD}, None, 3, "plain"]
    ends: list[EndOp] = [end_op_success(a, r) for a, r in zip(attempts, results, strict=False)]
    ends.append(end_op_failure(attempts[4], ValueError(AWKWARD)))
    more_starts = [StartOp(run_id, "t-record") for run_id in second]
    apply_batch([*ends, *more_starts])

    assert [op.outcome for op in ends] == [True] * 5
    assert all(isinstance(op.outcome, Attempt) for op in more_starts)
    rows = {str(row.pk): row for row in JobRun.objects.filter(pk__in=first + second)}
    for run_id, result in zip(first, results, strict=False):
        row = rows[run_id]
        assert (row.status, row.attempts, row.result, row.error) == ("succeeded", 1, result, "")
        assert row.started_at is not None and row.finished_at is not None
    failed = rows[first[4]]
    assert failed.status == "failed" and failed.result is None
    assert failed.error == f"ValueError: {AWKWARD}" and AWKWARD in failed.traceback
    assert {rows[run_id].status for run_id in second} == {"running"}


def test_fencing_holds_inside_a_batch(prepared):
    run_ids = new_runs(3)
    starts = [StartOp(run_id, "t-record") for run_id in run_ids]
    apply_batch(starts)
    first = starts[0].outcome
    assert isinstance(first, Attempt)
    # run 0 is redelivered (its worker died): attempt 2 takes over in the same batch as
    # attempt 1's late outcome, a duplicate delivery of run 1 and run 2's outcome.
    batch: list[StartOp | EndOp] = [
        StartOp(run_ids[0], "t-record", redelivered=True),
        end_op_success(first, "late"),
        StartOp(run_ids[1], "t-record"),
        end_op_success(starts[2].outcome, "ok"),  # type: ignore[arg-type]
    ]
    apply_batch(batch)
    redelivered, late, duplicate, ok = batch
    assert isinstance(redelivered.outcome, Attempt) and redelivered.outcome.attempt == 2
    assert isinstance(duplicate.outcome, Skip)
    assert ok.outcome is True
    # attempt 1's outcome was decided in the same batch as attempt 2's start: whichever order the
    # batch applied them in, the run ends up running attempt 2, never finished by attempt 1.
    row = JobRun.objects.get(pk=run_ids[0])
    assert (row.status, row.attempts, row.lost_attempts) == ("running", 2, 1)
    if late.outcome is True:  # applied before the redelivery: then recorded, and reopened by it
        assert [entry["outcome"] for entry in row.attempt_log] == ["lost"]
    assert JobRun.objects.get(pk=run_ids[2]).status == "succeeded"


def test_many_threads_through_one_writer_record_every_run_once(prepared):
    """Group commit under contention: 8 threads, 40 runs each, start then outcome, all recorded."""
    run_ids = new_runs(320)
    writer = BatchWriter()
    errors: list[BaseException] = []

    def work(mine: list[str]) -> None:
        try:
            for run_id in mine:
                start = writer.apply(StartOp(run_id, "t-record"))
                assert isinstance(start.outcome, Attempt), start.outcome
                end = writer.apply(end_op_success(start.outcome, {"run": run_id}))
                assert end.outcome is True
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            from django.db import connections

            connections.close_all()

    threads = [threading.Thread(target=work, args=(run_ids[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    writer.stop()
    assert not errors, errors
    rows = JobRun.objects.filter(pk__in=run_ids)
    assert rows.filter(status="succeeded", attempts=1).count() == 320
    assert all(row.result == {"run": str(row.pk)} for row in rows)


def test_statements_are_prepared_once_per_connection_unless_turned_off(prepared):
    from django.db import connection

    connection.close()  # a fresh session: prepared statements live as long as their connection
    run_ids = new_runs(6)
    for run_id in run_ids:  # lone starts, then a batch: two statement shapes
        apply_batch([StartOp(run_id, "t-record")])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s",
            ['%UPDATE "fusion_jobs_jobrun"%'],
        )
        statements = [row[0] for row in cursor.fetchall()]
    if prepared:
        assert len(statements) == 1  # six executions, one statement prepared
    else:
        assert statements == []


@pytest.mark.parametrize(
    ("options", "setting", "expected"),
    [
        ({}, True, True),
        ({}, False, False),
        ({"server_side_binding": True}, True, False),  # the project binds without preparing
        ({"server_side_binding": True, "prepare_threshold": 5}, True, True),
    ],
)
def test_when_statements_are_prepared(settings, options, setting, expected):
    from types import SimpleNamespace

    settings.FUSION_JOBS_PREPARED_STATEMENTS = setting
    psycopg = SimpleNamespace(__name__="psycopg")
    fake = SimpleNamespace(vendor="postgresql", settings_dict={"OPTIONS": options}, Database=psycopg)
    assert prepares(fake) is expected  # type: ignore[arg-type]
    assert prepares(SimpleNamespace(vendor="sqlite", settings_dict={})) is False  # type: ignore[arg-type]
    psycopg2 = SimpleNamespace(
        vendor="postgresql", settings_dict={"OPTIONS": options}, Database=SimpleNamespace(__name__="psycopg2")
    )
    assert prepares(psycopg2) is False  # type: ignore[arg-type]


def test_a_stopped_writer_starts_again_on_the_next_op():
    writer = BatchWriter()
    first, second = new_runs(2)
    assert isinstance(writer.apply(StartOp(first, "t-record")).outcome, Attempt)
    writer.stop()
    assert isinstance(writer.apply(StartOp(second, "t-record")).outcome, Attempt)
    writer.stop()
    assert set(JobRun.objects.filter(pk__in=[first, second]).values_list("status", flat=True)) == {"running"}


def test_statements_go_through_django_cursor_and_leave_the_connection_as_it_was(prepared):
    """execute_wrappers and query logging (assertNumQueries, debug tools, APM) see every statement,
    prepared or not, and the shared connection's prepare_threshold is not changed."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    run_ids = new_runs(3)
    connection.ensure_connection()
    threshold = connection.connection.prepare_threshold
    seen: list[str] = []

    def spy(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy), CaptureQueriesContext(connection) as captured:
        apply_batch([StartOp(run_ids[0], "t-record")])
        apply_batch([StartOp(run_id, "t-record") for run_id in run_ids[1:]])
    updates = [sql for sql in seen if 'UPDATE "fusion_jobs_jobrun"' in sql]
    assert len(updates) == 2, seen
    assert sum('UPDATE "fusion_jobs_jobrun"' in query["sql"] for query in captured.captured_queries) == 2
    assert connection.connection.prepare_threshold == threshold
