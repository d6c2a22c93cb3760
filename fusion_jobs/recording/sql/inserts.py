"""INSERTs of new run rows: one (``insert_run``) or a batch that differs only in id and arguments."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.db import connections, models

from ...models import JobRun
from .executor import ASYNC_COMMIT_RETURNING, alone, cached_sql, execute, pg_array

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

    sql = cached_sql(connection, f"insert-{durable}", build)
    params = []
    for f in fields:
        value = f.pre_save(row, True)
        # Plain values of plain columns go as they are (what get_db_prep_save returns for them,
        # at a fraction of its cost on the inline path); everything else is prepared by Django.
        if not (value is None or (type(value) in _PLAIN_VALUES and isinstance(f, _PLAIN_FIELDS))):
            value = f.get_db_prep_save(value, connection)
        params.append(value)
    execute(connection, sql, params)
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
    params += [pg_array(run_ids), json.dumps(payloads)]
    with connection.cursor() as cursor:
        cursor.execute(cached_sql(connection, "insert-many", build), params)
