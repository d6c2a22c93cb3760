"""Executing recording's raw SQL: statement text built once per connection, run through Django's cursor.

Also the helpers every statement shares: PostgreSQL's async commit, id formats, and the
checks of what a connection supports (the fast path, preparing, running a statement alone).
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Callable
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from ...conf import jobs_settings
from ...models import JobRun

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


def key_text(value: Any) -> str:
    """A returned id as the canonical string (PostgreSQL returns it so; SQLite stores 32 hex digits)."""
    if isinstance(value, str) and len(value) == 36:
        return value
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))


def pg_array(values: list[str]) -> str:
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


def prep_value(connection: BaseDatabaseWrapper, name: str, value: Any) -> Any:
    return _field(name).get_db_prep_save(value, connection)


_statements: dict[tuple[str, str], str] = {}


def cached_sql(
    connection: BaseDatabaseWrapper, kind: str, build: Callable[[Callable[[str], str], str], str]
) -> str:
    """The SQL of one kind of statement for this connection, built once: identifiers from the model.

    On PostgreSQL a statement's text doesn't depend on how many rows it writes (arrays, not one
    placeholder per row), so it is prepared once per connection (see ``execute``).
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
    import psycopg  # lazy: psycopg is no dependency of a SQLite project

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


def execute(connection: BaseDatabaseWrapper, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
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
