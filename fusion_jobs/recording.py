"""Status transitions of a ``JobRun``, shared by the worker middleware and the inline backend.

Every write is conditional, so status only moves forward and an older attempt can never
overwrite a newer one (attempt fencing): an attempt's end is written only while the row still
says ``running`` with that attempt's number.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import traceback as tb
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, connections, models, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from . import metrics
from .conf import jobs_settings
from .exceptions import UnknownTaskError
from .models import TERMINAL_STATUSES, JobRun, RunMode, RunStatus
from .registry import Task, get_task
from .utils import clean_text, scrub, to_json_result

logger = logging.getLogger("fusion_jobs.runs")

TRACEBACK_LIMIT = 20_000
ERROR_LIMIT = 2_000

_worker_id: str | None = None


def worker_id() -> str:
    global _worker_id
    pid = os.getpid()
    if _worker_id is None or not _worker_id.endswith(f":{pid}"):
        _worker_id = f"{socket.gethostname()}:{pid}"
    return _worker_id


def db_alias() -> str:
    return router.db_for_write(JobRun) or "default"


@dataclass
class Attempt:
    """An attempt that may run: which run, which attempt number."""

    run_id: str
    attempt: int
    task_name: str
    retries_done: int = 0


@dataclass
class Skip:
    """The message must not run; ``reason`` is logged (and recorded where it ends the run)."""

    reason: str


def describe_exception(exc: BaseException) -> tuple[str, str]:
    """(``Type: message``, traceback) with the broker password scrubbed, both length-capped.

    Never raises, and both are storable: NUL and lone surrogates (which PostgreSQL refuses, and
    would leave the run ``running``) become U+FFFD, and an exception whose ``str()`` fails is
    still described.
    """
    url = str(jobs_settings.BROKER_URL or "")
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not lose the outcome
        text = "<str() of the exception failed>"
    message = clean_text(scrub(f"{type(exc).__name__}: {text}", url))[:ERROR_LIMIT]
    trace = clean_text(scrub("".join(tb.format_exception(exc)), url))
    if len(trace) > TRACEBACK_LIMIT:
        trace = trace[: TRACEBACK_LIMIT // 2] + "\n…\n" + trace[-TRACEBACK_LIMIT // 2 :]
    return message, trace


def _log_entry(row: JobRun, outcome: str, now: datetime, error: str = "") -> dict[str, Any]:
    return {
        "attempt": row.attempts,
        "outcome": outcome,
        "worker": row.worker,
        "started_at": row.started_at.isoformat() if row.started_at else None,
        "ended_at": now.isoformat(),
        "error": error[:500],
    }


@dataclass
class StartOp:
    """Begin an attempt of ``run_id`` (one message delivery)."""

    run_id: str
    task_name: str
    redelivered: bool = False
    mode: str = RunMode.WORKER
    kwargs: dict[str, Any] | None = None
    queue: str = ""
    retries_done: int = 0
    outcome: Attempt | Skip | None = None


@dataclass
class EndOp:
    """End an attempt: ``succeeded``/``failed``/``timed_out``, or ``retrying`` with a next attempt time."""

    attempt: Attempt
    status: str
    result: Any = None
    error: str = ""
    traceback: str = ""
    next_attempt_at: datetime | None = None
    log_outcome: str = ""
    outcome: bool | None = None


Op = StartOp | EndOp

_LOADED_FIELDS = (
    "id",
    "status",
    "attempts",
    "lost_attempts",
    "attempt_log",
    "worker",
    "started_at",
    "published_at",
)


def _apply_start(
    op: StartOp, row: JobRun | None, now: datetime, changed: dict[str, set[str]]
) -> JobRun | None:
    """Decide one start against its locked row; returns a row to insert when there was none."""
    if row is None:
        # A message with no row: published by another producer, or its row was pruned. The row
        # takes the task's limits as enqueue() would (the sweeper reads its execution timeout).
        op.outcome = Attempt(op.run_id, 1, op.task_name, op.retries_done)
        try:
            task_obj: Task | None = get_task(op.task_name)
        except UnknownTaskError:
            task_obj = None
        return JobRun(
            id=op.run_id,
            task_name=op.task_name,
            queue=op.queue or "default",
            mode=op.mode,
            kwargs=op.kwargs or {},
            max_retries=task_obj.effective_max_retries if task_obj else 0,
            execution_timeout=task_obj.effective_timeout if task_obj else None,
            status=RunStatus.RUNNING,
            attempts=1,
            started_at=now,
            heartbeat_at=now,
            published_at=now,
            worker=worker_id(),
            enqueued_by="message without a run row",
        )
    fields = changed.setdefault(op.run_id, set())
    if row.status in TERMINAL_STATUSES:
        op.outcome = Skip(f"run is already {row.status}")
        return None
    if row.status == RunStatus.RUNNING and row.attempts > 0:
        if not op.redelivered and op.mode == RunMode.WORKER:
            op.outcome = Skip("a live attempt is already running this run (duplicate delivery)")
            return None
        row.lost_attempts += 1
        metrics.lost_attempt(op.task_name)
        row.attempt_log = [
            *row.attempt_log,
            _log_entry(row, "lost", now, "worker died mid-run (message redelivered)"),
        ]
        fields |= {"lost_attempts", "attempt_log"}
        if row.lost_attempts >= int(jobs_settings.MAX_LOST_ATTEMPTS):
            row.status = RunStatus.FAILED
            row.finished_at = now
            row.error = (
                f"WorkerLost: the worker running this task died {row.lost_attempts} times "
                f"(killed, out of memory?); giving up after FUSION_JOBS_MAX_LOST_ATTEMPTS={row.lost_attempts}"
            )
            fields |= {"status", "finished_at", "error"}
            op.outcome = Skip(f"worker lost {row.lost_attempts} times")
            return None
    row.attempts += 1
    row.status = RunStatus.RUNNING
    row.started_at = now
    row.heartbeat_at = now
    row.next_attempt_at = None
    row.worker = worker_id()
    row.progress_stage, row.progress_done, row.progress_total = "", None, None
    fields |= {
        "attempts",
        "status",
        "started_at",
        "heartbeat_at",
        "next_attempt_at",
        "worker",
        "progress_stage",
        "progress_done",
        "progress_total",
    }
    if row.published_at is None:  # it was delivered, so it was published
        row.published_at = now
        fields.add("published_at")
    op.outcome = Attempt(op.run_id, row.attempts, op.task_name, op.retries_done)
    return None


def _apply_end(op: EndOp, row: JobRun | None, now: datetime, changed: dict[str, set[str]]) -> None:
    if row is None or row.attempts != op.attempt.attempt or row.status != RunStatus.RUNNING:
        op.outcome = False
        logger.info(
            "run %s attempt %s: outcome not recorded, a newer attempt owns the run", *_ids(op.attempt)
        )
        return
    fields = changed.setdefault(op.attempt.run_id, set())
    row.status = op.status
    row.error, row.traceback = op.error, op.traceback
    fields |= {"status", "error", "traceback"}
    if op.status == RunStatus.RETRYING:
        # The retry waits here, unpublished, until the relay publishes it at next_attempt_at:
        # never as a delayed message held unacked in a worker (RabbitMQ's consumer_timeout).
        row.next_attempt_at = op.next_attempt_at
        row.published_at = None
        row.attempt_log = [*row.attempt_log, _log_entry(row, op.log_outcome or "failed", now, op.error)]
        fields |= {"next_attempt_at", "published_at", "attempt_log"}
    else:
        row.finished_at = now
        row.result = op.result
        fields |= {"finished_at", "result"}
    op.outcome = True


def _run_id(op: Op) -> str:
    return op.run_id if isinstance(op, StartOp) else op.attempt.run_id


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def _canonical_uuid(value: str) -> str | None:
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


def _supports_fast_path(connection: BaseDatabaseWrapper) -> bool:
    """Conditional ``UPDATE ... RETURNING``: PostgreSQL, and SQLite from 3.35."""
    if connection.vendor == "postgresql":
        return True
    if connection.vendor == "sqlite":
        backend: Any = connection
        return bool(backend.Database.sqlite_version_info >= (3, 35, 0))
    return False


def _field(name: str) -> Any:
    return JobRun._meta.get_field(name)


def _col(connection: BaseDatabaseWrapper, name: str) -> str:
    return str(connection.ops.quote_name(_field(name).column))


def _prep(connection: BaseDatabaseWrapper, name: str, value: Any) -> Any:
    return _field(name).get_db_prep_save(value, connection)


#: Prefix of a statement run on its own (autocommit) on PostgreSQL: its commit doesn't wait for
#: the disk. ``set_config(..., true)`` lasts until the end of the current transaction, which for a
#: lone statement is that statement, and the commit reads the setting before it is reset. The
#: UPDATE joins this one-row CTE, so the setting is made before any row is written.
ASYNC_COMMIT_CTE = "WITH fj_async AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true)) "
#: The same for an ``INSERT ... VALUES``, whose ``RETURNING`` runs before the statement's commit.
ASYNC_COMMIT_RETURNING = " RETURNING set_config('synchronous_commit', 'off', true)"

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
        sql = build(lambda name: _col(connection, name), connection.ops.quote_name(JobRun._meta.db_table))
        _statements[key] = sql
    return sql


def _prepares(connection: BaseDatabaseWrapper) -> bool:
    """Whether our statements are prepared on this connection.

    Not when ``PREPARED_STATEMENTS`` is off, and not when the project binds Django's own queries
    on the server without preparing them (``server_side_binding`` without ``prepare_threshold``:
    the set-up a transaction-pooling proxy needs), which we follow rather than second-guess.
    """
    if connection.vendor != "postgresql" or not jobs_settings.PREPARED_STATEMENTS:
        return False
    options = connection.settings_dict.get("OPTIONS") or {}
    return not (options.get("server_side_binding") and options.get("prepare_threshold") is None)


def _rows(connection: BaseDatabaseWrapper, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """Execute one statement; its result rows.

    On PostgreSQL, with ``PREPARED_STATEMENTS`` on, through a psycopg cursor on Django's
    connection that binds on the server and prepares the statement: Django's own cursors splice
    the values into the text, so PostgreSQL parses and plans every statement anew (about a third
    of a one-row UPDATE's time here).
    """
    if not _prepares(connection):
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall()) if cursor.description else []
    import psycopg

    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_no_broken_transaction()
    raw = connection.connection
    if raw.prepare_threshold is None:
        # Django leaves psycopg's preparing off; its own cursors bind on the client and never
        # prepare, so this reaches only ours (_prepares() ruled out server binding).
        raw.prepare_threshold = 5
    with connection.wrap_database_errors, psycopg.Cursor(raw) as cursor:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchall() if cursor.description else []


_PLAIN_VALUES = (str, int, float)
_PLAIN_FIELDS = (models.CharField, models.TextField, models.IntegerField, models.FloatField)


def insert_run(row: JobRun, *, using: str, wait_for_disk: bool = True) -> None:
    """INSERT a new run row: one statement, without ``Model.save()``'s per-call compilation.

    ``wait_for_disk=False`` (PostgreSQL, outside a transaction): the commit doesn't wait for the
    WAL flush. Callers use it only where something else makes the row recoverable: a queued
    run's message is confirmed by the broker before ``enqueue()`` returns and carries everything
    a worker needs to recreate the row; an inline run is recorded, not redone.
    """
    connection = connections[using]
    fast = (
        not wait_for_disk
        and connection.vendor == "postgresql"
        and not connection.in_atomic_block
        and connection.get_autocommit()
    )
    fields = JobRun._meta.concrete_fields

    def build(c: Callable[[str], str], table: str) -> str:
        return (
            f"INSERT INTO {table} ({', '.join(c(f.name) for f in fields)}) "  # noqa: S608
            f"VALUES ({', '.join(['%s'] * len(fields))}){ASYNC_COMMIT_RETURNING if fast else ''}"
        )

    sql = _statement(connection, f"insert-{fast}", build)
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


def begin_inline_attempt(row: JobRun, now: datetime) -> None:
    """Give a new inline row the state its first start would: ``running``, attempt 1, this process.

    Written with its INSERT, so an inline run outside a transaction costs one write to start.
    """
    row.status = RunStatus.RUNNING
    row.attempts = 1
    row.started_at = row.heartbeat_at = row.published_at = now
    row.worker = worker_id()


def _unindexed(table: str, column: str) -> str:
    """``column`` as an expression no index matches.

    The batch statements are prepared, so they run a generic plan, made without the batch's
    size; a plan that reached the rows through the status index would walk every queued (or
    running) run of a backlog. Hiding the status column from the planner leaves it one path,
    the primary key.
    """
    return f"({table}.{column} || '')"


def _start_sql(connection: BaseDatabaseWrapper, count: int, *, async_commit: bool) -> str:
    """``queued``/``retrying`` -> ``running`` for a set of runs (PostgreSQL: an array of ids)."""
    arrays = connection.vendor == "postgresql" and count > 1

    def build(c: Callable[[str], str], table: str) -> str:
        ids = "= ANY(CAST(%s AS uuid[]))" if arrays else f"IN ({', '.join(['%s'] * count)})"
        return (
            # Identifiers come from the model and are quoted; every value is a parameter.
            f"{ASYNC_COMMIT_CTE if async_commit else ''}"  # noqa: S608
            f"UPDATE {table} SET {c('status')} = %s, {c('attempts')} = {table}.{c('attempts')} + 1, "
            f"{c('started_at')} = %s, {c('heartbeat_at')} = %s, {c('next_attempt_at')} = NULL, "
            f"{c('worker')} = %s, {c('progress_stage')} = '', {c('progress_done')} = NULL, "
            f"{c('progress_total')} = NULL, {c('published_at')} = COALESCE({table}.{c('published_at')}, %s) "
            f"{'FROM fj_async ' if async_commit else ''}"
            f"WHERE {table}.{c('id')} {ids} AND {_unindexed(table, c('status'))} IN (%s, %s) "
            f"RETURNING CAST({table}.{c('id')} AS text), {table}.{c('attempts')}"
        )

    return _statement(connection, f"start-{async_commit}-{'n' if arrays else count}", build)


def _start_params(
    connection: BaseDatabaseWrapper, starts: list[tuple[str, StartOp]], now: datetime
) -> list[Any]:
    stamp = _prep(connection, "started_at", now)
    params: list[Any] = [RunStatus.RUNNING.value, stamp, stamp, worker_id(), stamp]
    if connection.vendor == "postgresql" and len(starts) > 1:
        params.append(_pg_array([key for key, _ in starts]))
    else:
        params += [_prep(connection, "id", key) for key, _ in starts]
    return [*params, RunStatus.QUEUED.value, RunStatus.RETRYING.value]


def _settle_starts(starts: list[tuple[str, StartOp]], updated: dict[str, int]) -> list[StartOp]:
    missed = []
    for key, op in starts:
        attempt = updated.get(key)
        if attempt is None:
            missed.append(op)
        else:
            op.outcome = Attempt(op.run_id, attempt, op.task_name, op.retries_done)
    return missed


def _fast_starts(
    connection: BaseDatabaseWrapper,
    starts: list[tuple[str, StartOp]],
    now: datetime,
    *,
    async_commit: bool = False,
) -> list[StartOp]:
    """``queued``/``retrying`` -> ``running`` for every op's run in one conditional UPDATE.

    The same transition ``_apply_start`` makes for such a row, decided by the ``WHERE`` under the
    row lock the UPDATE takes, so two workers still can't both start the attempt. Returns the ops
    whose row was not in one of those states (missing, running, finished): the locking path
    decides those. ``async_commit``: the statement runs on its own on PostgreSQL and its commit
    doesn't wait for the disk (a start lost in a database crash is redone by the redelivery).
    """
    if not starts:
        return []
    sql = _start_sql(connection, len(starts), async_commit=async_commit)
    rows = _rows(connection, sql, _start_params(connection, starts, now))
    return _settle_starts(starts, {_key(row[0]): int(row[1]) for row in rows})


def _end_sql(connection: BaseDatabaseWrapper, count: int, *, async_commit: bool) -> str:
    """Fenced final outcomes: on PostgreSQL a batch in one ``UPDATE ... FROM jsonb_to_recordset``;
    a lone one (and each one elsewhere) by its key, which plans to one primary-key lookup."""
    if connection.vendor != "postgresql" or count == 1:
        async_commit = async_commit and connection.vendor == "postgresql"
        return _statement(
            connection,
            f"end-1-{async_commit}",
            lambda c, table: (
                f"{ASYNC_COMMIT_CTE if async_commit else ''}"  # noqa: S608
                f"UPDATE {table} SET {c('status')} = %s, {c('error')} = %s, {c('traceback')} = %s, "
                f"{c('result')} = %s, {c('finished_at')} = %s {'FROM fj_async ' if async_commit else ''}"
                f"WHERE {table}.{c('id')} = %s AND {table}.{c('attempts')} = %s AND {table}.{c('status')} = %s "
                f"RETURNING CAST({table}.{c('id')} AS text)"
            ),
        )
    return _statement(
        connection,
        f"end-{async_commit}",
        lambda c, table: (
            f"{ASYNC_COMMIT_CTE if async_commit else ''}"  # noqa: S608
            f"UPDATE {table} SET {c('status')} = v.status, {c('error')} = v.error, "
            f"{c('traceback')} = v.traceback, {c('result')} = v.result, {c('finished_at')} = %s "
            f"FROM {'fj_async, ' if async_commit else ''}"
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


def _settle_ends(ends: list[tuple[str, EndOp]], updated: set[str]) -> None:
    for key, op in ends:
        op.outcome = key in updated
        if not op.outcome:
            logger.info(
                "run %s attempt %s: outcome not recorded, a newer attempt owns the run", *_ids(op.attempt)
            )


def _fast_ends(
    connection: BaseDatabaseWrapper,
    ends: list[tuple[str, EndOp]],
    now: datetime,
    *,
    async_commit: bool = False,
) -> None:
    """Final outcomes (succeeded/failed/timed_out), fenced: written only while ``running`` that attempt.

    What ``_apply_end`` writes for such an op, with the fencing in the ``WHERE``; an op whose row
    no longer matches (a newer attempt owns the run) gets ``outcome = False`` as there.
    """
    if not ends:
        return
    sql = _end_sql(connection, len(ends), async_commit=async_commit)
    stamp = _prep(connection, "finished_at", now)
    if connection.vendor == "postgresql" and len(ends) > 1:
        updated = {_key(row[0]) for row in _rows(connection, sql, _end_params(ends, stamp))}
    else:
        updated = set()
        for key, op in ends:
            params = [op.status, op.error, op.traceback, _prep(connection, "result", op.result), stamp]
            key_params = [_prep(connection, "id", key), op.attempt.attempt, RunStatus.RUNNING.value]
            if _rows(connection, sql, [*params, *key_params]):
                updated.add(key)
    _settle_ends(ends, updated)


def _fast_starts_and_ends(
    connection: BaseDatabaseWrapper,
    starts: list[tuple[str, StartOp]],
    ends: list[tuple[str, EndOp]],
    now: datetime,
) -> list[StartOp]:
    """PostgreSQL: a batch's starts and outcomes in one statement (two data-modifying CTEs), one commit.

    The commit waits for the disk, as the outcomes need; the rows are distinct (one op per run).
    """
    start_sql = _start_sql(connection, len(starts), async_commit=False)
    end_sql = _end_sql(connection, 2, async_commit=False)
    sql = _statement(
        connection,
        f"start-end-{'n' if len(starts) > 1 else 1}",
        lambda c, table: (
            f"WITH fj_s AS ({start_sql}), fj_e AS ({end_sql}) "  # noqa: S608
            "SELECT 1, id, attempts FROM fj_s UNION ALL SELECT 2, id, 0 FROM fj_e"
        ),
    )
    params = _start_params(connection, starts, now) + _end_params(ends, _prep(connection, "finished_at", now))
    rows = _rows(connection, sql, params)
    _settle_ends(ends, {_key(row[1]) for row in rows if row[0] == 2})
    return _settle_starts(starts, {_key(row[1]): int(row[2]) for row in rows if row[0] == 1})


def _apply_fast(
    connection: BaseDatabaseWrapper,
    ops: list[Op],
    now: datetime,
    *,
    async_starts: bool = False,
    async_ends: bool = False,
) -> list[Op]:
    """Decide the common transitions with conditional UPDATEs; return the ops left for the locking path.

    Taken here: a start of a ``queued``/``retrying`` run, and a final outcome, each for a run no
    other op of the batch touches (so their order within the batch can't matter). Everything
    else (a redelivery of a ``running`` run, a message without a row, a retry, a malformed id)
    goes through ``SELECT ... FOR UPDATE`` and the same decisions as before.
    """
    per_run = Counter(_run_id(op) for op in ops)
    starts: list[tuple[str, StartOp]] = []
    ends: list[tuple[str, EndOp]] = []
    slow: set[int] = set()
    for index, op in enumerate(ops):
        key = _canonical_uuid(_run_id(op))
        if key is None or per_run[_run_id(op)] > 1:
            slow.add(index)
        elif isinstance(op, StartOp):
            starts.append((key, op))
        elif op.status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.TIMED_OUT):
            ends.append((key, op))
        else:
            slow.add(index)
    if starts and ends and connection.vendor == "postgresql":
        missed = {id(op) for op in _fast_starts_and_ends(connection, starts, ends, now)}
    else:
        missed = {id(op) for op in _fast_starts(connection, starts, now, async_commit=async_starts)}
        _fast_ends(connection, ends, now, async_commit=async_ends)
    return [op for index, op in enumerate(ops) if index in slow or id(op) in missed]


def apply_batch(ops: list[Op], *, now: datetime | None = None, durable_ends: bool = True) -> None:
    """Apply several transitions: one statement per kind for the common ones, one commit each.

    Each op's ``outcome`` is filled in. The common transitions (a queued run starting, an attempt
    ending) are conditional UPDATEs whose ``WHERE`` makes the decision under the row lock the
    UPDATE takes; outside a caller's transaction each is a statement on its own (one round trip,
    one commit: the starts' commit doesn't wait for the disk, the outcomes' does, before this
    returns). The rest are decided in one transaction on rows locked with ``SELECT ... FOR
    UPDATE``. Either way two workers can never both start the same attempt, and an end is
    written only while the row is still ``running`` that attempt (fencing).
    ``durable_ends=False`` lets a lone outcome's commit skip the wait for the disk too (inline
    runs, see ``insert_run``).
    """
    alias = db_alias()
    now = now or timezone.now()
    connection = connections[alias]
    nested = connection.in_atomic_block
    if _supports_fast_path(connection):
        if not nested and connection.get_autocommit():
            pg = connection.vendor == "postgresql"
            ops = _apply_fast(connection, ops, now, async_starts=pg, async_ends=pg and not durable_ends)
        else:
            with transaction.atomic(using=alias):
                ops = _apply_fast(connection, ops, now)
    if not ops:
        return
    only_starts = all(isinstance(op, StartOp) for op in ops)
    with transaction.atomic(using=alias):
        if only_starts and connection.vendor == "postgresql" and not nested:
            # A start is redone from the broker's redelivery if lost in a database crash; only
            # outcomes (written before the ack) need to wait for the disk. Never inside a
            # caller's transaction: SET LOCAL would make that transaction's commit asynchronous.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        _apply_locked(ops, alias, now)


def _apply_locked(ops: list[Op], alias: str, now: datetime) -> None:
    """Decide ops on their rows locked with ``SELECT ... FOR UPDATE``: one locking read, one write."""
    ids = {_run_id(op) for op in ops}
    rows = {
        str(row.pk): row
        for row in JobRun.objects.using(alias).select_for_update().filter(pk__in=ids).only(*_LOADED_FIELDS)
    }
    changed: dict[str, set[str]] = {}
    creates: list[JobRun] = []
    for op in ops:
        if isinstance(op, StartOp):
            new_row = _apply_start(op, rows.get(op.run_id), now, changed)
            if new_row is not None:
                creates.append(new_row)
                rows[op.run_id] = new_row
        else:
            _apply_end(op, rows.get(op.attempt.run_id), now, changed)
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


def end_op_success(attempt: Attempt, result: Any) -> EndOp:
    stored = to_json_result(result, int(jobs_settings.RESULT_MAX_BYTES)) if result is not None else None
    return EndOp(attempt, RunStatus.SUCCEEDED, result=stored)


def end_op_failure(attempt: Attempt, exc: BaseException, *, status: str = RunStatus.FAILED) -> EndOp:
    error, trace = describe_exception(exc)
    return EndOp(attempt, status, error=error, traceback=trace)


def end_op_retry(attempt: Attempt, exc: BaseException, delay_seconds: float, *, outcome: str) -> EndOp:
    error, trace = describe_exception(exc)
    return EndOp(
        attempt,
        RunStatus.RETRYING,
        error=error,
        traceback=trace,
        next_attempt_at=timezone.now() + timedelta(seconds=delay_seconds),
        log_outcome=outcome,
    )


def _end(op: EndOp, *, durable: bool = True) -> bool:
    apply_batch([op], durable_ends=durable)
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


def mark_skipped(run_id: str, reason: str) -> None:
    alias = db_alias()
    JobRun.objects.using(alias).filter(pk=run_id).exclude(status__in=TERMINAL_STATUSES).update(
        status=RunStatus.SKIPPED, skip_reason=reason[:200], finished_at=timezone.now()
    )


def mark_published(run_id: str) -> None:
    """Note that the run's message reached the broker, so the outbox relay leaves it alone.

    On PostgreSQL, outside a caller's transaction, this commit doesn't wait for the disk: the mark
    is a hint, and losing it in a database crash only makes the relay publish the run again, a
    duplicate that the worker skips. That saves an fsync on every ``enqueue()``. For the same
    reason a database error here is logged, not raised: the message is already on the broker,
    and raising would make the caller enqueue the work a second time.
    """
    try:
        _mark_published(run_id)
    except DatabaseError as exc:
        logger.warning(
            "run %s was published but could not be marked so (%s); the worker will mark it", run_id, exc
        )


def _mark_published(run_id: str) -> None:
    alias = db_alias()
    connection = connections[alias]
    now = timezone.now()
    if connection.vendor != "postgresql" or connection.in_atomic_block or not connection.get_autocommit():
        JobRun.objects.using(alias).filter(pk=run_id, published_at__isnull=True).update(published_at=now)
        return
    sql = _statement(
        connection,
        "published",
        # SKIP LOCKED: a row locked now is a worker starting the run (its message arrives before
        # the publisher's confirm does), and the start sets published_at itself; waiting for
        # its lock would only delay both.
        lambda c, table: (
            f"{ASYNC_COMMIT_CTE}, fj_run AS (SELECT {c('id')} FROM {table} "  # noqa: S608
            f"WHERE {c('id')} = %s AND {c('published_at')} IS NULL FOR UPDATE SKIP LOCKED) "
            f"UPDATE {table} SET {c('published_at')} = %s FROM fj_async, fj_run "
            f"WHERE {table}.{c('id')} = fj_run.{c('id')}"
        ),
    )
    _rows(connection, sql, [run_id, _prep(connection, "published_at", now)])


def cancel(run_ids: list[str]) -> int:
    """Cancel queued or retrying runs; a worker skips their message when it arrives."""
    return (
        JobRun.objects.using(db_alias())
        .filter(pk__in=run_ids, status__in=[RunStatus.QUEUED, RunStatus.RETRYING])
        .update(status=RunStatus.CANCELLED, finished_at=timezone.now(), skip_reason="cancelled")
    )


def write_progress(
    attempt: Attempt, stage: str, done: int | None, total: int | None, *, now: datetime | None = None
) -> None:
    alias = db_alias()
    JobRun.objects.using(alias).filter(
        pk=attempt.run_id, attempts=attempt.attempt, status=RunStatus.RUNNING
    ).update(
        progress_stage=stage[:100],
        progress_done=done,
        progress_total=total,
        heartbeat_at=now or timezone.now(),
    )


def sweep_stuck(now: datetime | None = None) -> int:
    """Mark ``running`` runs whose timeout plus grace has long passed with no heartbeat as failed.

    A run still ``running`` that long after its deadline has no live worker (the soft and hard
    time limits would have ended it), and its message was not redelivered (or it would have
    restarted), so nothing else will ever finish it.
    """
    now = now or timezone.now()
    grace = float(jobs_settings.STUCK_GRACE_SECONDS)
    default_timeout = float(jobs_settings.DEFAULT_EXECUTION_TIMEOUT)
    marked = 0
    alias = db_alias()
    # Oldest sign of life first, so a backlog of legitimately long runs can't hide the stuck ones.
    candidates = (
        JobRun.objects.using(alias)
        .filter(status=RunStatus.RUNNING, started_at__isnull=False)
        .annotate(last_sign=Coalesce("heartbeat_at", "started_at"))
        .filter(last_sign__lt=now - timedelta(seconds=grace))
        .order_by("last_sign")
        .only("id", "execution_timeout", "started_at", "heartbeat_at", "attempts", "worker", "attempt_log")
    )
    for row in candidates[:1000]:
        last_sign = row.heartbeat_at or row.started_at
        silent = (now - last_sign).total_seconds() if last_sign else 0.0
        if silent <= (row.execution_timeout or default_timeout) + grace:
            continue
        error = f"WorkerLost: no sign of life for {int(silent)} s, past the execution timeout plus grace"
        marked += (
            JobRun.objects.using(alias)
            .filter(pk=row.pk, status=RunStatus.RUNNING, attempts=row.attempts)
            .update(
                status=RunStatus.FAILED,
                finished_at=now,
                error=error,
                lost_attempts=F("lost_attempts") + 1,
                attempt_log=[*row.attempt_log, _log_entry(row, "lost", now, error)],
            )
        )
    return marked


def _ids(attempt: Attempt) -> tuple[str, int]:
    return attempt.run_id, attempt.attempt
