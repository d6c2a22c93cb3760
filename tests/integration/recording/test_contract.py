"""The fast path's contract: the same ops leave the same rows as the locked path.

``apply_batch`` decides the common transitions in the ``WHERE`` of conditional UPDATEs (the fast
path, ``recording.sql``) and everything else with ``transitions`` on rows locked by
``SELECT ... FOR UPDATE`` (``batch.apply_locked``). One scenario (start, success, failure, timeout,
retry and its second attempt, a duplicate start, a redelivery, the end of an unknown run, a stale
end, a start of a finished run, a start of a cancelled run, a skipped run, a message without a row)
is applied once through each, on real PostgreSQL in autocommit as a worker's writer runs it; every
column of every row must match (timestamps by whether they are set, and equal to the ops' time).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from fusion_jobs.models import JobRun
from fusion_jobs.recording import (
    Attempt,
    EndOp,
    Op,
    Skip,
    StartOp,
    apply_batch,
    cancel,
    end_op_failure,
    end_op_retry,
    end_op_success,
    mark_skipped,
)
from fusion_jobs.recording.batch import apply_locked
from fusion_jobs.recording.places import db_alias

pytestmark = pytest.mark.django_db(transaction=True)

NAMES = ("ok", "fail", "timeout", "retry", "dup", "lost", "cancelled", "done", "skipped")


def _attempt(outcome: Any) -> Attempt:
    assert isinstance(outcome, Attempt), outcome
    return outcome


def _scenario(apply: Any) -> tuple[dict[str, JobRun], list[Any], str]:
    """Apply the scenario's steps with ``apply(ops, now)``; the rows by name, every outcome, the orphan's id."""
    runs = {name: JobRun.objects.create(task_name="t-record", kwargs={"name": name}) for name in NAMES}
    ids = {name: str(row.pk) for name, row in runs.items()}
    orphan = str(uuid.uuid4())  # a message whose row does not exist
    cancel([ids["cancelled"]])
    mark_skipped(ids["skipped"], "overlap")
    outcomes: list[Any] = []
    now = timezone.now()

    def step(ops: list[Op]) -> list[Op]:
        apply(ops, now)
        outcomes.extend(op.outcome for op in ops)
        return ops

    first = step(
        [StartOp(ids[name], "t-record") for name in ("ok", "fail", "timeout", "retry", "dup", "lost", "done")]
    )
    attempts = {
        name: _attempt(op.outcome)
        for name, op in zip(("ok", "fail", "timeout", "retry", "dup", "lost", "done"), first, strict=True)
    }
    step([end_op_success(attempts["done"], {"done": True})])
    second = step(
        [
            end_op_success(attempts["ok"], {"nested": [1, None], "text": 'a "quoted" ✓'}),
            end_op_failure(attempts["fail"], ValueError("boom")),
            end_op_failure(attempts["timeout"], TimeoutError("slow"), status="timed_out"),
            end_op_retry(attempts["retry"], RuntimeError("again"), 30, outcome="failed"),
            StartOp(ids["dup"], "t-record"),  # duplicate delivery of a running run
            StartOp(ids["lost"], "t-record", redelivered=True),  # its worker died
            StartOp(ids["cancelled"], "t-record"),
            StartOp(ids["done"], "t-record"),
            StartOp(ids["skipped"], "t-record"),
            EndOp(Attempt(str(uuid.uuid4()), 1, "t-record"), "succeeded"),  # end of an unknown run
            StartOp(orphan, "t-record", queue="q", kwargs={"x": 1}),
        ]
    )
    lost = _attempt(second[5].outcome)
    third = step(
        [
            StartOp(ids["retry"], "t-record", retries_done=1),
            end_op_success(attempts["lost"], "stale"),  # attempt 1 of a run attempt 2 owns
            end_op_success(attempts["dup"], None),
        ]
    )
    retried = _attempt(third[0].outcome)
    step(
        [
            end_op_success(retried, "second time"),
            end_op_failure(lost, KeyError("k")),
            end_op_success(_attempt(second[-1].outcome), 7),
        ]
    )
    rows = {name: JobRun.objects.get(pk=pk) for name, pk in ids.items()}
    rows["orphan"] = JobRun.objects.get(pk=orphan)
    return rows, [_comparable(outcome) for outcome in outcomes], orphan


def _comparable(outcome: Any) -> Any:
    if isinstance(outcome, Attempt):
        return ("attempt", outcome.attempt, outcome.retries_done)
    if isinstance(outcome, Skip):
        return ("skip", outcome.reason)
    return outcome


def _columns(row: JobRun, now_values: set[datetime]) -> dict[str, Any]:
    """Every column; an id as whether it is set, a timestamp as unset, the ops' time, or another."""
    values: dict[str, Any] = {}
    for field in JobRun._meta.concrete_fields:
        value = getattr(row, field.attname)
        if field.primary_key:
            value = "id"
        elif isinstance(value, datetime):
            value = "now" if value in now_values else "set"
        elif field.name == "attempt_log":
            value = [
                {**entry, "started_at": bool(entry["started_at"]), "ended_at": bool(entry["ended_at"])}
                for entry in value
            ]
        elif field.name == "traceback":
            value = value.splitlines()[-1:] if value else value
        values[field.name] = value
    return values


def test_fast_and_locked_paths_leave_the_same_rows():
    nows: set[datetime] = set()

    def locked(ops: list[Op], now: datetime) -> None:
        nows.add(now)
        with transaction.atomic(using=db_alias()):
            apply_locked(ops, db_alias(), now)

    def fast(ops: list[Op], now: datetime) -> None:
        nows.add(now)
        apply_batch(ops, now=now)

    locked_rows, locked_outcomes, _ = _scenario(locked)
    with CaptureQueriesContext(connection) as captured:
        fast_rows, fast_outcomes, _ = _scenario(fast)
    fast_statements = [
        query["sql"] for query in captured.captured_queries if "RETURNING CAST" in (query["sql"] or "")
    ]
    assert fast_statements, "the fast path was not taken"
    assert fast_outcomes == locked_outcomes
    for name, row in locked_rows.items():
        assert _columns(fast_rows[name], nows) == _columns(row, nows), name
    statuses = {name: row.status for name, row in fast_rows.items()}
    assert statuses == {
        "ok": "succeeded",
        "fail": "failed",
        "timeout": "timed_out",
        "retry": "succeeded",
        "dup": "succeeded",
        "lost": "failed",
        "cancelled": "cancelled",
        "done": "succeeded",
        "skipped": "skipped",
        "orphan": "succeeded",
    }
