"""django-tasks-db: ``Task.enqueue()`` on its ``DatabaseBackend`` and ``manage.py db_worker``."""

# ruff: noqa: RUF001  (the multiplication sign is meant)
from __future__ import annotations

from bench.compare.peer import Peer
from bench.compare.services import PROCESSES
from bench.peers.tasks_db import noop


def send(p: str) -> None:
    noop.enqueue(p=p)


PEER = Peer(
    key="django_tasks_db",
    label="django-tasks-db",
    family="db",
    tracked=True,
    database="fj_bench_tasks_db",
    tables=("django_tasks_database_dbtaskresult",),
    workers=tuple(
        ("manage.py", "db_worker", "--backend", "db", "--no-startup-delay") for _ in range(PROCESSES)
    ),
    send=send,
    history_sql=(
        "SELECT count(*), extract(epoch FROM max(finished_at)) FROM django_tasks_database_dbtaskresult "
        "WHERE status = 'SUCCESSFUL'"
    ),
    min_rate=30.0,
    latency_samples=30,
    config=f"{PROCESSES} × `manage.py db_worker` (defaults: one task at a time per process, polls every 1 s when idle)",
    history="its queue row is the history: updated at start and at the end",
    durable="the row, committed (synchronous commit)",
    confirms="no broker (PostgreSQL queue, polled)",
    concurrency=f"{PROCESSES} processes, one task at a time each",
)
