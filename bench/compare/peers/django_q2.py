"""django-q2 on its ORM broker: ``async_task`` and ``manage.py qcluster``."""

from __future__ import annotations

from django_q.tasks import async_task

from bench.compare.peer import Peer
from bench.compare.services import PROCESSES
from bench.peers.q2_tasks import PATH


def send(p: str) -> None:
    async_task(PATH, p=p)


PEER = Peer(
    key="django_q2",
    label="django-q2",
    family="db",
    tracked=True,
    database="fj_bench_q2",
    tables=("django_q_task", "django_q_ormq"),
    workers=(("manage.py", "qcluster"),),
    send=send,
    history_sql="SELECT count(*), extract(epoch FROM max(stopped)) FROM django_q_task WHERE success",
    min_rate=20.0,
    latency_samples=30,
    config=(
        f"ORM broker, `workers: {PROCESSES}` (its default, the CPU count), `save_limit: 0` (keeps all history); "
        "other defaults (polls every 0.2 s)"
    ),
    history="a queue row (`OrmQ`, deleted once done) and a `Task` result row written at the end by its monitor",
    durable="the queue row, committed (synchronous commit); its arguments pickled and signed",
    confirms="no broker (PostgreSQL queue, polled)",
    concurrency=f"{PROCESSES} processes, no threads",
)
