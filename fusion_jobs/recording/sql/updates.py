"""The conditional UPDATEs of the fast path: starts, fenced ends, both at once, and the published mark.

A conditional ``UPDATE ... RETURNING`` decides a start or an end under the row lock it takes,
exactly as ``transitions`` decides it on a locked row.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from ...models import RunStatus
from ..places import worker_id
from ..transitions import EndOp
from .executor import ASYNC_COMMIT_CTE, cached_sql, execute, key_text, pg_array, prep_value


def _unindexed(table: str, column: str) -> str:
    """``column`` as an expression no index matches.

    The batch statements are prepared, so they run a generic plan, made without the batch's
    size; a plan that reached the rows through the status index would walk every queued (or
    running) run of a backlog. Hiding the status column from the planner leaves it one path,
    the primary key.
    """
    return f"({table}.{column} || '')"


def _start_sql(connection: BaseDatabaseWrapper, count: int, *, durable: bool) -> str:
    """``queued``/``retrying`` -> ``running`` for a set of runs (PostgreSQL: an array of ids)."""
    arrays = connection.vendor == "postgresql" and count > 1

    def build(c: Callable[[str], str], table: str) -> str:
        ids = "= ANY(CAST(%s AS uuid[]))" if arrays else f"IN ({', '.join(['%s'] * count)})"
        return (
            # Identifiers come from the model and are quoted; every value is a parameter.
            f"{'' if durable else ASYNC_COMMIT_CTE}"  # noqa: S608
            f"UPDATE {table} SET {c('status')} = %s, {c('attempts')} = {table}.{c('attempts')} + 1, "
            f"{c('started_at')} = %s, {c('heartbeat_at')} = %s, {c('next_attempt_at')} = NULL, "
            f"{c('worker')} = %s, {c('progress_stage')} = '', {c('progress_done')} = NULL, "
            f"{c('progress_total')} = NULL, {c('published_at')} = COALESCE({table}.{c('published_at')}, %s) "
            f"{'' if durable else 'FROM fj_async '}"
            f"WHERE {table}.{c('id')} {ids} AND {_unindexed(table, c('status'))} IN (%s, %s) "
            f"RETURNING CAST({table}.{c('id')} AS text), {table}.{c('attempts')}"
        )

    return cached_sql(connection, f"start-{durable}-{'n' if arrays else count}", build)


def _start_params(connection: BaseDatabaseWrapper, keys: list[str], now: datetime) -> list[Any]:
    stamp = prep_value(connection, "started_at", now)
    params: list[Any] = [RunStatus.RUNNING.value, stamp, stamp, worker_id(), stamp]
    if connection.vendor == "postgresql" and len(keys) > 1:
        params.append(pg_array(keys))
    else:
        params += [prep_value(connection, "id", key) for key in keys]
    return [*params, RunStatus.QUEUED.value, RunStatus.RETRYING.value]


def start_runs(
    connection: BaseDatabaseWrapper, keys: list[str], now: datetime, *, durable: bool
) -> dict[str, int]:
    """``queued``/``retrying`` -> ``running`` for every run in ``keys``, in one conditional UPDATE.

    The transition ``transitions.apply_start`` makes for such a row, decided by the ``WHERE``
    under the row lock the UPDATE takes, so two workers can't both start the attempt. Returns
    the attempt number of each run started; a run missing here was in another state.
    """
    if not keys:
        return {}
    rows = execute(
        connection, _start_sql(connection, len(keys), durable=durable), _start_params(connection, keys, now)
    )
    return {key_text(row[0]): int(row[1]) for row in rows}


def _end_sql(connection: BaseDatabaseWrapper, count: int, *, durable: bool) -> str:
    """Fenced final outcomes: on PostgreSQL a batch in one ``UPDATE ... FROM jsonb_to_recordset``;
    a lone one (and each one elsewhere) by its key, which plans to one primary-key lookup."""
    if connection.vendor != "postgresql" or count == 1:
        durable = durable or connection.vendor != "postgresql"
        return cached_sql(
            connection,
            f"end-1-{durable}",
            lambda c, table: (
                f"{'' if durable else ASYNC_COMMIT_CTE}"  # noqa: S608
                f"UPDATE {table} SET {c('status')} = %s, {c('error')} = %s, {c('traceback')} = %s, "
                f"{c('result')} = %s, {c('finished_at')} = %s {'' if durable else 'FROM fj_async '}"
                f"WHERE {table}.{c('id')} = %s AND {table}.{c('attempts')} = %s AND {table}.{c('status')} = %s "
                f"RETURNING CAST({table}.{c('id')} AS text)"
            ),
        )
    return cached_sql(
        connection,
        f"end-{durable}",
        lambda c, table: (
            f"{'' if durable else ASYNC_COMMIT_CTE}"  # noqa: S608
            f"UPDATE {table} SET {c('status')} = v.status, {c('error')} = v.error, "
            f"{c('traceback')} = v.traceback, {c('result')} = v.result, {c('finished_at')} = %s "
            f"FROM {'' if durable else 'fj_async, '}"
            "jsonb_to_recordset(CAST(%s AS jsonb)) "
            "AS v (id uuid, attempt int, status text, error text, traceback text, result jsonb) "
            f"WHERE {table}.{c('id')} = ANY(CAST(%s AS uuid[])) AND {table}.{c('id')} = v.id "
            f"AND {table}.{c('attempts')} = v.attempt AND {_unindexed(table, c('status'))} = %s "
            f"RETURNING CAST({table}.{c('id')} AS text)"
        ),
    )


def _end_params(ends: list[tuple[str, EndOp]], stamp: Any) -> list[Any]:
    """PostgreSQL: the batch as one JSON document (JSON null is SQL NULL there), plus its ids."""
    rows = [
        {
            "id": key,
            "attempt": op.attempt.attempt,
            "status": op.status,
            "error": op.error,
            "traceback": op.traceback,
            "result": op.result,
        }
        for key, op in ends
    ]
    return [stamp, json.dumps(rows), pg_array([key for key, _ in ends]), RunStatus.RUNNING.value]


def end_runs(
    connection: BaseDatabaseWrapper, ends: list[tuple[str, EndOp]], now: datetime, *, durable: bool
) -> set[str]:
    """Final outcomes, fenced: written only while the run is ``running`` that attempt.

    What ``transitions.apply_end`` writes for such an op, with the fencing in the ``WHERE``.
    Returns the runs written; an op whose run is missing there lost to a newer attempt.
    """
    if not ends:
        return set()
    sql = _end_sql(connection, len(ends), durable=durable)
    stamp = prep_value(connection, "finished_at", now)
    if connection.vendor == "postgresql" and len(ends) > 1:
        return {key_text(row[0]) for row in execute(connection, sql, _end_params(ends, stamp))}
    updated = set()
    for key, op in ends:
        params = [op.status, op.error, op.traceback, prep_value(connection, "result", op.result), stamp]
        key_params = [prep_value(connection, "id", key), op.attempt.attempt, RunStatus.RUNNING.value]
        if execute(connection, sql, [*params, *key_params]):
            updated.add(key)
    return updated


def start_and_end_runs(
    connection: BaseDatabaseWrapper, keys: list[str], ends: list[tuple[str, EndOp]], now: datetime
) -> tuple[dict[str, int], set[str]]:
    """PostgreSQL: a batch's starts and outcomes in one statement (two data-modifying CTEs), one commit.

    The commit waits for the disk, as the outcomes need; the rows are distinct (one op per run).
    Returns what ``start_runs`` and ``end_runs`` return.
    """
    start_sql = _start_sql(connection, len(keys), durable=True)
    end_sql = _end_sql(connection, 2, durable=True)
    sql = cached_sql(
        connection,
        f"start-end-{'n' if len(keys) > 1 else 1}",
        lambda c, table: (
            f"WITH fj_s AS ({start_sql}), fj_e AS ({end_sql}) "  # noqa: S608
            "SELECT 1, id, attempts FROM fj_s UNION ALL SELECT 2, id, 0 FROM fj_e"
        ),
    )
    params = _start_params(connection, keys, now) + _end_params(
        ends, prep_value(connection, "finished_at", now)
    )
    rows = execute(connection, sql, params)
    return {key_text(row[1]): int(row[2]) for row in rows if row[0] == 1}, {
        key_text(row[1]) for row in rows if row[0] == 2
    }


def make_transaction_not_durable(connection: BaseDatabaseWrapper) -> None:
    """``SET LOCAL synchronous_commit TO OFF``: the current transaction's commit won't wait for the disk.

    Only in a transaction of our own: in a caller's it would make that transaction's commit
    asynchronous too.
    """
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit TO OFF")


def mark_published_not_durable(connection: BaseDatabaseWrapper, run_id: str, now: datetime) -> None:
    """Set ``published_at`` if unset, in a statement of its own whose commit doesn't wait for the disk.

    ``SKIP LOCKED``: a row locked now is a worker starting the run (its message arrives before
    the publisher's confirm does), and the start sets ``published_at`` itself; waiting for its
    lock would only delay both.
    """
    sql = cached_sql(
        connection,
        "published",
        lambda c, table: (
            f"{ASYNC_COMMIT_CTE}, fj_run AS (SELECT {c('id')} FROM {table} "  # noqa: S608
            f"WHERE {c('id')} = %s AND {c('published_at')} IS NULL FOR UPDATE SKIP LOCKED) "
            f"UPDATE {table} SET {c('published_at')} = %s FROM fj_async, fj_run "
            f"WHERE {table}.{c('id')} = fj_run.{c('id')}"
        ),
    )
    execute(connection, sql, [run_id, prep_value(connection, "published_at", now)])


def mark_published_late_not_durable(
    connection: BaseDatabaseWrapper, run_ids: list[str], now: datetime
) -> None:
    """``marks.mark_published_late`` on PostgreSQL: one statement, the ids as one array.

    The ORM's ``pk__in`` binds one parameter per id, and the marking thread's CPU for a batch
    of 1,000 went mostly to that, taken from the threads enqueueing. Its commit doesn't wait
    for the disk, for the reason ``mark_published_not_durable``'s doesn't.
    """
    sql = cached_sql(
        connection,
        "published-late",
        lambda c, table: (
            f"{ASYNC_COMMIT_CTE}, fj_run AS (SELECT {c('id')} FROM {table} "  # noqa: S608
            f"WHERE {c('id')} = ANY(CAST(%s AS uuid[])) AND {c('published_at')} IS NULL "
            f"AND {c('attempts')} = 0 AND {c('next_attempt_at')} IS NULL FOR UPDATE SKIP LOCKED) "
            f"UPDATE {table} SET {c('published_at')} = %s FROM fj_async, fj_run "
            f"WHERE {table}.{c('id')} = fj_run.{c('id')}"
        ),
    )
    execute(connection, sql, [pg_array(run_ids), prep_value(connection, "published_at", now)])
