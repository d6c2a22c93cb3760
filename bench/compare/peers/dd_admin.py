"""Dramatiq with django-dramatiq's ``AdminMiddleware``: a ``Task`` row on enqueue, start and finish."""

from __future__ import annotations

from django_dramatiq.models import Task

from bench.compare.peer import Peer
from bench.compare.services import PROCESSES, THREADED, THREADS
from bench.peers import dd_admin

plain = dd_admin.build(admin=False)[1]


def send(p: str) -> None:
    dd_admin.actor.send(p=p)


def preload(n: int) -> None:
    """The messages, then the rows AdminMiddleware would have written at enqueue, in bulk (a shorter preload)."""
    messages = [plain.send(p="d") for _ in range(n)]
    rows = [
        Task(
            id=m.message_id,
            status=Task.STATUS_ENQUEUED,
            message_data=m.encode(),
            actor_name=m.actor_name,
            queue_name=m.queue_name,
        )
        for m in messages
    ]
    Task.tasks.bulk_create(rows, batch_size=1000)


PEER = Peer(
    key="dd_admin",
    label="django-dramatiq admin",
    family="broker",
    database="fj_bench_dd",
    queue=dd_admin.QUEUE,
    tables=("django_dramatiq_task",),
    workers=(
        (
            "-m",
            "dramatiq",
            "bench.peers.dd_admin:broker",
            "-p",
            str(PROCESSES),
            "-t",
            str(THREADS),
            "-Q",
            dd_admin.QUEUE,
        ),
    ),
    worker_env={"FUSION_JOBS_BROKER_URL": ""},
    send=send,
    preload=preload,
    history_sql=(
        "SELECT count(*), extract(epoch FROM max(updated_at)) FROM django_dramatiq_task WHERE status = 'done'"
    ),
    min_rate=50.0,
    small_n=True,
    config="django-dramatiq's default middleware (Prometheus aside), `AdminMiddleware` on; same worker flags as Dramatiq",
    history="a `Task` row (message body included), upserted at enqueue, start and finish",
    durable="the `Task` row, committed (synchronous commit) before the publish",
    confirms="off (django-dramatiq's default)",
    concurrency=THREADED,
)
