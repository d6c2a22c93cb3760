"""Applying transitions to run rows: a batch of starts and ends, and the one-op calls built on it.

The common transitions (a queued run starting, an attempt ending) take the fast path: one
conditional UPDATE per kind (``sql``), whose ``WHERE`` makes the decision under the row lock the
UPDATE takes. Everything else (a redelivery of a ``running`` run, a message without a row, a
retry, a malformed id, two ops for one run) is decided by ``transitions`` on rows locked with
``SELECT ... FOR UPDATE``: the locked path. Either way two workers can never both start the same
attempt, and an end is written only while the row is still ``running`` that attempt (fencing).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from ..models import JobRun, RunMode, RunStatus
from . import sql
from .places import db_alias
from .transitions import (
    FINAL_OUTCOMES,
    LOADED_FIELDS,
    Attempt,
    EndOp,
    Op,
    Skip,
    StartOp,
    apply_end,
    apply_start,
    end_op_failure,
    end_op_retry,
    end_op_success,
    log_not_recorded,
    new_row_for,
    run_id_of,
)


def apply_batch(ops: list[Op], *, now: datetime | None = None, durable: bool = True) -> None:
    """Apply several transitions: one statement per kind for the common ones, one commit each.

    Each op's ``outcome`` is filled in. Outside a caller's transaction each fast statement is a
    transaction on its own (one round trip, one commit): on PostgreSQL the starts' commit doesn't
    wait for the disk (a start lost in a database crash is redone by the broker's redelivery),
    the outcomes' does, before this returns, unless ``durable=False`` (inline runs, see
    ``sql.insert_run``). The locked path runs in one transaction.
    """
    alias = db_alias()
    now = now or timezone.now()
    connection = connections[alias]
    nested = connection.in_atomic_block
    if sql.supports_fast_path(connection):
        if not nested and connection.get_autocommit():
            ops = _apply_fast(connection, ops, now, alone=sql.alone(connection), durable=durable)
        else:
            with transaction.atomic(using=alias):
                ops = _apply_fast(connection, ops, now, alone=False, durable=True)
    if not ops:
        return
    only_starts = all(isinstance(op, StartOp) for op in ops)
    with transaction.atomic(using=alias):
        if only_starts and connection.vendor == "postgresql" and not nested:
            # Only outcomes (written before the ack) need to wait for the disk.
            sql.make_transaction_not_durable(connection)
        apply_locked(ops, alias, now)


def _apply_fast(
    connection: BaseDatabaseWrapper, ops: list[Op], now: datetime, *, alone: bool, durable: bool
) -> list[Op]:
    """Decide the common transitions with conditional UPDATEs; return the ops left for the locked path.

    Taken here: a start of a ``queued``/``retrying`` run, and a final outcome, each for a run no
    other op of the batch touches (so their order within the batch can't matter). ``alone``: the
    statements are transactions of their own, so the starts' commit may skip the wait for the disk.
    """
    per_run = Counter(run_id_of(op) for op in ops)
    starts: list[tuple[str, StartOp]] = []
    ends: list[tuple[str, EndOp]] = []
    slow: set[int] = set()
    for index, op in enumerate(ops):
        key = sql.canonical_uuid(run_id_of(op))
        if key is None or per_run[run_id_of(op)] > 1:
            slow.add(index)
        elif isinstance(op, StartOp):
            starts.append((key, op))
        elif op.status in FINAL_OUTCOMES:
            ends.append((key, op))
        else:
            slow.add(index)
    keys = [key for key, _ in starts]
    if starts and ends and connection.vendor == "postgresql":
        started, ended = sql.start_and_end_runs(connection, keys, ends, now)
    else:
        started = sql.start_runs(connection, keys, now, durable=not alone)
        ended = sql.end_runs(connection, ends, now, durable=durable or not alone)
    for key, end in ends:
        end.outcome = key in ended
        if not end.outcome:
            log_not_recorded(end.attempt)
    missed = set()
    for key, start in starts:
        attempt = started.get(key)
        if attempt is None:
            missed.add(id(start))  # missing, running or finished: the locked path decides
        else:
            start.outcome = Attempt(start.run_id, attempt, start.task_name, start.retries_done)
    return [op for index, op in enumerate(ops) if index in slow or id(op) in missed]


def apply_locked(ops: list[Op], alias: str, now: datetime) -> None:
    """Decide ops on their rows locked with ``SELECT ... FOR UPDATE``: one locking read, one write.

    Runs in the caller's transaction (the locks last until it ends). The fast path must leave the
    rows exactly as this does (tests/integration/recording/test_contract.py).
    """
    ids = {run_id_of(op) for op in ops}
    rows = {
        str(row.pk): row
        for row in JobRun.objects.using(alias).select_for_update().filter(pk__in=ids).only(*LOADED_FIELDS)
    }
    changed: dict[str, set[str]] = {}
    creates: list[JobRun] = []
    for op in ops:
        run_id = run_id_of(op)
        row = rows.get(run_id)
        if isinstance(op, EndOp):
            changed.setdefault(run_id, set()).update(apply_end(op, row, now))
        elif row is None:
            rows[run_id] = new_row_for(op, now)
            creates.append(rows[run_id])
        else:
            changed.setdefault(run_id, set()).update(apply_start(op, row, now))
    if creates:
        JobRun.objects.using(alias).bulk_create(creates, ignore_conflicts=True)
    created = {str(row.pk) for row in creates}
    by_fields: dict[frozenset[str], list[JobRun]] = {}
    for run_id, fields in changed.items():
        if fields and run_id not in created:
            by_fields.setdefault(frozenset(fields), []).append(rows[run_id])
    for field_set, objs in by_fields.items():
        if len(objs) == 1:
            JobRun.objects.using(alias).filter(pk=objs[0].pk).update(
                **{name: getattr(objs[0], name) for name in field_set}
            )
        else:
            JobRun.objects.using(alias).bulk_update(objs, sorted(field_set))


def start_attempt(
    run_id: str,
    *,
    task_name: str,
    redelivered: bool = False,
    mode: str = RunMode.WORKER,
    kwargs: dict[str, Any] | None = None,
    queue: str = "",
    retries_done: int = 0,
) -> Attempt | Skip:
    """Move the run to ``running`` for a new attempt, or say why the message must be skipped.

    A row already ``running`` means either a duplicate delivery (skip it) or, when the broker
    flags the message as redelivered, an attempt whose worker died: that attempt is recorded as
    lost, and after ``MAX_LOST_ATTEMPTS`` of them the run fails instead of looping forever.
    """
    op = StartOp(run_id, task_name, redelivered, mode, kwargs, queue, retries_done)
    apply_batch([op])
    assert op.outcome is not None
    return op.outcome


def _end(op: EndOp, *, durable: bool = True) -> bool:
    apply_batch([op], durable=durable)
    return bool(op.outcome)


def finish_success(attempt: Attempt, result: Any, *, durable: bool = True) -> bool:
    return _end(end_op_success(attempt, result), durable=durable)


def finish_failure(
    attempt: Attempt, exc: BaseException, *, status: str = RunStatus.FAILED, durable: bool = True
) -> bool:
    return _end(end_op_failure(attempt, exc, status=status), durable=durable)


def mark_retrying(attempt: Attempt, exc: BaseException, delay_seconds: float, *, outcome: str) -> bool:
    """Record that the attempt failed and another is scheduled ``delay_seconds`` from now."""
    return _end(end_op_retry(attempt, exc, delay_seconds, outcome=outcome))
