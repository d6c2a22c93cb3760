"""procrastinate through its Django contrib: ``defer`` / ``batch_defer`` and ``manage.py procrastinate worker``."""

# ruff: noqa: RUF001  (the multiplication sign is meant)
from __future__ import annotations

from bench.compare.peer import Peer
from bench.compare.services import PROCESSES, THREADS
from bench.peers.procrastinate_tasks import QUEUE, noop


def send(p: str) -> None:
    noop.defer(p=p)


def send_batch(p: str, size: int) -> None:
    noop.batch_defer(*[{"p": p}] * size)


PEER = Peer(
    key="procrastinate",
    label="procrastinate",
    family="db",
    tracked=True,
    database="fj_bench_procrastinate",
    tables=("procrastinate_jobs", "procrastinate_events"),
    workers=tuple(
        ("manage.py", "procrastinate", "worker", "--concurrency", str(THREADS), "--queues", QUEUE)
        for _ in range(PROCESSES)
    ),
    send=send,
    send_batch=send_batch,
    history_sql=(
        "SELECT (SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'), "
        "(SELECT extract(epoch FROM max(at)) FROM procrastinate_events WHERE type = 'succeeded')"
    ),
    config=(
        f"Django contrib defaults; {PROCESSES} × `manage.py procrastinate worker --concurrency {THREADS}` "
        "(LISTEN/NOTIFY on; sync tasks run in threads)"
    ),
    history="its job row is the history (status updated at start and end), plus an event row per transition",
    durable="the job row, committed (synchronous commit)",
    confirms="no broker (PostgreSQL queue, LISTEN/NOTIFY)",
    concurrency=f"{PROCESSES} processes × {THREADS} async slots (sync tasks in threads)",
)
