"""The raw SQL of run recording: statement builders, their executor, and PostgreSQL's async commit.

The only place in ``recording`` that writes SQL by hand or touches psycopg:

- ``executor``: statement text built once per connection, run (and prepared) through Django's cursor;
- ``inserts``: ``insert_run`` and ``insert_runs``;
- ``updates``: the fast path's conditional UPDATEs (starts, fenced ends) and the published marks.

A statement's commit waits for the disk unless ``durable=False``: then, run on its own in
autocommit on PostgreSQL, it sets ``synchronous_commit`` off for its own transaction
(PostgreSQL's *asynchronous commit*). Callers pass ``durable=False`` only where something else
makes the write recoverable (see ``batch.apply_batch`` and ``insert_run``).
"""

from __future__ import annotations

from .executor import (
    ASYNC_COMMIT_CTE,
    ASYNC_COMMIT_RETURNING,
    alone,
    canonical_uuid,
    prepares,
    supports_fast_path,
)
from .inserts import insert_run, insert_runs
from .updates import (
    end_runs,
    make_transaction_not_durable,
    mark_published_late_not_durable,
    mark_published_not_durable,
    start_and_end_runs,
    start_runs,
)

__all__ = [
    "ASYNC_COMMIT_CTE",
    "ASYNC_COMMIT_RETURNING",
    "alone",
    "canonical_uuid",
    "end_runs",
    "insert_run",
    "insert_runs",
    "make_transaction_not_durable",
    "mark_published_late_not_durable",
    "mark_published_not_durable",
    "prepares",
    "start_and_end_runs",
    "start_runs",
    "supports_fast_path",
]
