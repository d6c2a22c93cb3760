"""Celery 5 on the same RabbitMQ: JSON only (no pickle), no result backend, default acks (early).

Workers: ``python -m celery -A bench.peers.celery_app worker -P prefork -c 2 -Q bench_celery``
and the same with ``-P threads -c 8``.
"""

from __future__ import annotations

from celery import Celery

from bench.peers import BROKER_URL
from bench.sidechannel import mark

QUEUE = "bench_celery"

app = Celery("fj_bench", broker=BROKER_URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    event_serializer="json",
    result_backend=None,
    task_ignore_result=True,
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.celery_noop")
def noop(p: str = "d") -> None:
    mark(p)
