"""Run recording: status transitions of a ``JobRun``, shared by the worker middleware and the inline backend.

- ``transitions``: the state machine (what a start or an end does to a row), pure Python;
- ``batch``: applying transitions, many at once (the worker's writer) or one (``start_attempt``, ``finish_*``);
- ``sql``: the only raw SQL (the fast path's conditional UPDATEs, ``insert_run``, async commit);
- ``marks``: published, skipped, cancelled, progress; ``sweep``: the stuck-run sweeper;
- ``writer``: a worker process's batch writer (imported by the worker only);
- ``places``: ``db_alias()`` and ``worker_id()``.
"""

from __future__ import annotations

from .batch import apply_batch, finish_failure, finish_success, mark_retrying, start_attempt
from .marks import cancel, mark_published, mark_published_late, mark_skipped, write_progress
from .places import db_alias, worker_id
from .sql import insert_run, insert_runs
from .sweep import sweep_stuck
from .transitions import (
    ERROR_LIMIT,
    TRACEBACK_LIMIT,
    Attempt,
    EndOp,
    Op,
    Skip,
    StartOp,
    begin_inline_attempt,
    describe_exception,
    end_op_failure,
    end_op_retry,
    end_op_success,
)

__all__ = [
    "ERROR_LIMIT",
    "TRACEBACK_LIMIT",
    "Attempt",
    "EndOp",
    "Op",
    "Skip",
    "StartOp",
    "apply_batch",
    "begin_inline_attempt",
    "cancel",
    "db_alias",
    "describe_exception",
    "end_op_failure",
    "end_op_retry",
    "end_op_success",
    "finish_failure",
    "finish_success",
    "insert_run",
    "insert_runs",
    "mark_published",
    "mark_published_late",
    "mark_retrying",
    "mark_skipped",
    "start_attempt",
    "sweep_stuck",
    "worker_id",
    "write_progress",
]
