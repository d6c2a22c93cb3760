"""The raw SQL of run recording: statement builders, their executor, and PostgreSQL's async commit.

The only module of ``recording`` that writes SQL by hand or touches psycopg. Its statements are
the fast path of the common transitions: a conditional ``UPDATE ... RETURNING`` decides a start
or an end under the row lock it takes, exactly as ``transitions`` decides it on a locked row.

A statement's commit waits for the disk unless ``durable=False``: then, run on its own in
autocommit on PostgreSQL, it sets ``synchronous_commit`` off for its own transaction
(PostgreSQL's *asynchronous commit*). Callers pass ``durable=False`` only where something else
makes the write recoverable (see ``batch.apply_batch`` and ``insert_run``).
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import connections, models
from django.db.backends.base.base import BaseDatabaseWrapper

from ..conf import jobs_settings
from ..models import JobRun, RunStatus
from .places import worker_id
from .transitions import EndOp

#: Prefix of a statement run on its own (autocommit) on PostgreSQL: its commit doesn't wait for
#: the disk. ``set_config(..., true)`` lasts until the end of the current transaction, which for a
#: lone statement is that statement, and the commit reads the setting before it is reset. The
#: UPDATE joins this one-row CTE, so the setting is made before any row is written.
ASYNC_COMMIT_CTE = "WITH fj_async AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true)) "
#: The same for an ``INSERT ... VALUES``, whose ``RETURNING`` runs before the statement's commit.
ASYNC_COMMIT_RETURNING = " RETURNING set_config('synchronous_commit', 'off', true)"

_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def canonical_uuid(value: str) -> str | None:
    """The run id when it is a UUID in canonical form (as every message id we publish is)."""
    return value if isinstance(value, str) and _CANONICAL_UUID.match(value) else None


def _key(value: Any) -> str:
    """A returned id as the canonical string (PostgreSQL returns it so; SQLite stores 32 hex digits)."""
    if isinstance(value, str) and len(value) == 36:
        return value
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))


def _pg_array(values: list[str]) -> str:
    """A PostgreSQL array literal of ids (canonical UUIDs: nothing to quote), one text parameter."""
    return "{" + ",".join(values) + "}"


def supports_fast_path(connection: BaseDatabaseWrapper) -> bool:
    """Conditional ``UPDATE ... RETURNING``: PostgreSQL, and SQLite from 3.35."""
    if connection.vendor == "postgresql":
        return True
    if connection.vendor == "sqlite":
        backend: Any = connection
        return bool(backend.Database.sqlite_version_info >= (3, 35, 0))
    return False


def alone(connection: BaseDatabaseWrapper) -> bool:
    """PostgreSQL in autocommit outside any transaction: a statement is its own transaction,
    so it may choose its commit's durability without touching a caller's."""
    return (
        connection.vendor == "postgresql" and not connection.in_atomic_block and connection.get_autocommit()
    )


def _field(name: str) -> Any:
    return JobRun._meta.get_field(name)


def _prep(connection: BaseDatabaseWrapper, name: str, value: Any) -> Any:
    return _field(name).get_db_prep_save(value, connection)


_statements: dict[tuple[str, str], str] = {}


def _statement(
    connection: BaseDatabaseWrapper, kind: str, build: Callable[[Callable[[str], str], str], str]
) -> str:
    """The SQL of one kind of statement for this connection, built once: identifiers from the model.

    On PostgreSQL a statement's text doesn't depend on how many rows it writes (arrays, not one
    placeholder per row), so it is prepared once per connection (see ``_rows``).
    """
    key = (connection.alias, kind)
    sql = _statements.get(key)
    if sql is None:
        quote = connection.ops.quote_name
        sql = build(lambda name: str(quote(_field(name).column)), quote(JobRun._meta.db_table))
        _statements[key] = sql
    return sql


def prepares(connection: BaseDatabaseWrapper) -> bool:
    """Whether our statements are prepared on this connection.

    Not when ``PREPARED_STATEMENTS`` is off, and not when the project binds Django's own queries
    on the server without preparing them (``server_side_binding`` without ``prepare_threshold``:
    the set-up a transaction-pooling proxy needs), which we follow rather than second-guess.
    """
    if connection.vendor != "postgresql" or not jobs_settings.PREPARED_STATEMENTS:
        return False
    if getattr(getattr(connection, "Database", None), "__name__", "") != "psycopg":
        return False  # psycopg2: Django's older driver prepares nothing
    options = connection.settings_dict.get("OPTIONS") or {}
    return not (options.get("server_side_binding") and options.get("prepare_threshold") is None)


@functools.cache
def _preparing_cursor() -> Any:
    """A psycopg cursor class that binds on the server and prepares every statement it runs.

    psycopg prepares nothing while its connection's ``prepare_threshold`` is None (Django's
    default), so the threshold is lifted for one execution and put back: Django's own cursors
    (client-bound, which never prepare) and the project's settings see no change.
    """
    import psycopg  # imported when first needed: psycopg is no dependency of a SQLite project

    class PreparingCursor(psycopg.Cursor[Any]):
        def execute(
            self, query: Any, params: Any = None, *, prepare: bool | None = None, binary: bool | None = None
        ) -> Any:
            raw = self.connection
            threshold = raw.prepare_threshold
            if threshold is None:
                raw.prepare_threshold = 0  # prepare=True below decides; None would refuse it
            try:
                super().execute(query, params, prepare=True, binary=binary)
            finally:
                raw.prepare_threshold = threshold
            if self._query is None:
                # psycopg keeps no query on a cursor that ran a prepared statement, and that is
                # where Django reads the statement it logs (``last_executed_query``).
                self._query = _LoggedQuery(query.encode())  # type: ignore[assignment]
            return self

    return PreparingCursor


class _LoggedQuery:
    """The statement as Django's query log reads it from a cursor (``cursor._query.query``)."""

    __slots__ = ("query",)

    def __init__(self, query: bytes) -> None:
        self.query = query


def _rows(connection: BaseDatabaseWrapper, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """Execute one statement through Django's cursor; its result rows.

    Django's cursor wrapper runs the ``execute_wrappers``, logs the query where Django logs
    queries (``assertNumQueries``, debug tools) and is what APM agents instrument. With
    ``PREPARED_STATEMENTS`` on, the psycopg cursor inside it is one that prepares: Django's own
    cursors splice the values into the text, so PostgreSQL would parse and plan every statement
    anew (about a third of a one-row UPDATE's time here). Our statements return no timestamps,
    so the time-zone loader Django registers on its cursors is not needed.
    """
    with connection.cursor() as cursor:
        if prepares(connection):
            cursor.cursor.close()
            cursor.cursor = _preparing_cursor()(connection.connection)
        cursor.execute(sql, params)
        return list(cursor.fetchall()) if cursor.description else []


_PLAIN_VALUES = (str, int, float)
_PLAIN_FIELDS = (models.CharField, models.TextField, models.IntegerField, models.FloatField)


def insert_run(row: JobRun, *, using: str, durable: bool = True) -> None:
    """INSERT a new run row: one statement, without ``Model.save()``'s per-call compilation.

    ``durable=False`` (PostgreSQL, outside a transaction): the commit doesn't wait for the WAL
    flush. Callers use it only where something else makes the row recoverable: a queued run's
    message is confirmed by the broker before ``enqueue()`` returns and carries everything a
    worker needs to recreate the row; an inline run is recorded, not redone.
    """
    connection = connections[using]
    durable = durable or not alone(connection)
    fields = JobRun._meta.concrete_fields

    def build(c: Callable[[str], str], table: str) -> str:
        return (
            f"INSERT INTO {table} ({', '.join(c(f.name) for f in fields)}) "  # noqa: S608
            f"VALUES ({', '.join(['%s'] * len(fields))}){'' if durable else ASYNC_COMMIT_RETURNING}"
        )

    sql = _statement(connection, f"insert-{durable}", build)
    params = []
    for f in fields:
        value = f.pre_save(row, True)
        # Plain values of plain columns go as they are (what get_db_prep_save returns for them,
        # at a fraction of its cost on the inline path); everything else is prepared by Django.
        if not (value is None or (type(value) in _PLAIN_VALUES and isinstance(f, _PLAIN_FIELDS))):
            value = f.get_db_prep_save(value, connection)
        params.append(value)
    _rows(connection, sql, params)
    row._state.adding = False
    row._state.db = using


def insert_runs(template: JobRun, run_ids: list[str], payloads: list[Any], *, using: str) -> None:
    """INSERT runs that differ only in id and arguments (``enqueue_many``): one statement.

    On PostgreSQL the template's other values are prepared once and the database pairs each id
    with its arguments (two array parameters), where ``bulk_create`` prepares every field of
    every row, most of a batch's time. Elsewhere, ``bulk_create`` of copies of the template.
    Its commit is the caller's (or, outside a transaction, one that waits for the disk).
    """
    connection = connections[using]
    fields = JobRun._meta.concrete_fields
    if connection.vendor != "postgresql":
        rows = []
        for run_id, payload in zip(run_ids, payloads, strict=True):
            row = JobRun(**{f.attname: getattr(template, f.attname) for f in fields})
            row.id, row.kwargs = run_id, payload
            rows.append(row)
        JobRun.objects.using(using).bulk_create(rows)
        return
    paired = {"id": "t.id", "kwargs": "t.kwargs"}

    def build(c: Callable[[str], str], table: str) -> str:
        return (
            f"INSERT INTO {table} ({', '.join(c(f.name) for f in fields)}) "  # noqa: S608
            f"SELECT {', '.join(paired.get(f.name, '%s') for f in fields)} "
            "FROM ROWS FROM (unnest(CAST(%s AS uuid[])), jsonb_array_elements(CAST(%s AS jsonb))) "
            "AS t(id, kwargs)"
        )

    params = [
        f.get_db_prep_save(f.pre_save(template, True), connection) for f in fields if f.name not in paired
    ]
    params += [_pg_array(run_ids), json.dumps(payloads)]
    with connection.cursor() as cursor:
        cursor.execute(_statement(connection, "insert-many", build), params)


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

    return _statement(connection, f"start-{durable}-{'n' if arrays else count}", build)


def _start_params(connection: BaseDatabaseWrapper, keys: list[str], now: datetime) -> list[Any]:
    stamp = _prep(connection, "started_at", now)
    params: list[Any] = [RunStatus.RUNNING.value, stamp, stamp, worker_id(), stamp]
    if connection.vendor == "postgresql" and len(keys) > 1:
        params.append(_pg_array(keys))
    else:
        params += [_prep(connection, "id", key) for key in keys]
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
    rows = _rows(
        connection, _start_sql(connection, len(keys), durable=durable), _start_params(connection, keys, now)
    )
    return {_key(row[0]): int(row[1]) for row in rows}


def _end_sql(connection: BaseDatabaseWrapper, count: int, *, durable: bool) -> str:
    """Fenced final outcomes: on PostgreSQL a batch in one ``UPDATE ... FROM jsonb_to_recordset``;
    a lone one (and each one elsewhere) by its key, which plans to one primary-key lookup."""
    if connection.vendor != "postgresql" or count == 1:
        durable = durable or connection.vendor != "postgresql"
        return _statement(
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
    return _statement(
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
    return [stamp, json.dumps(rows), _pg_array([key for key, _ in ends]), RunStatus.RUNNING.value]


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
    stamp = _prep(connection, "finished_at", now)
    if connection.vendor == "postgresql" and len(ends) > 1:
        return {_key(row[0]) for row in _rows(connection, sql, _end_params(ends, stamp))}
    updated = set()
    for key, op in ends:
        params = [op.status, op.error, op.traceback, _prep(connection, "result", op.result), stamp]
        key_params = [_prep(connection, "id", key), op.attempt.attempt, RunStatus.RUNNING.value]
        if _rows(connection, sql, [*params, *key_params]):
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
    sql = _statement(
        connection,
        f"start-end-{'n' if len(keys) > 1 else 1}",
        lambda c, table: (
            f"WITH fj_s AS ({start_sql}), fj_e AS ({end_sql}) "  # noqa: S608
            "SELECT 1, id, attempts FROM fj_s UNION ALL SELECT 2, id, 0 FROM fj_e"
        ),
    )
    params = _start_params(connection, keys, now) + _end_params(ends, _prep(connection, "finished_at", now))
    rows = _rows(connection, sql, params)
    return {_key(row[1]): int(row[2]) for row in rows if row[0] == 1}, {
        _key(row[1]) for row in rows if row[0] == 2
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
    sql = _statement(
        connection,
        "published",
        lambda c, table: (
            f"{ASYNC_COMMIT_CTE}, fj_run AS (SELECT {c('id')} FROM {table} "  # noqa: S608
            f"WHERE {c('id')} = %s AND {c('published_at')} IS NULL FOR UPDATE SKIP LOCKED) "
            f"UPDATE {table} SET {c('published_at')} = %s FROM fj_async, fj_run "
            f"WHERE {table}.{c('id')} = fj_run.{c('id')}"
        ),
    )
    _rows(connection, sql, [run_id, _prep(connection, "published_at", now)])
