"""Celery 5: bare (no result backend) on prefork and threads pools, and with django-celery-results."""

# ruff: noqa: RUF001  (the multiplication sign is meant)
from __future__ import annotations

import os

from bench.compare.peer import Peer
from bench.compare.services import PROCESSES, THREADED, THREADS
from bench.peers import celery_app, celery_results

REUSE_MAX = 1000
WORKER = ("-m", "celery", "-A")
QUIET = ("-l", "WARNING", "--without-mingle", "--without-gossip")


def send(p: str) -> None:
    celery_app.noop.delay(p=p)


def send_results(p: str) -> None:
    celery_results.noop.delay(p=p)


def bare(pool: str, concurrency: int) -> Peer:
    return Peer(
        key=f"celery_{pool}",
        label=f"Celery {pool} {concurrency}",
        family="celery",
        queue=celery_app.QUEUE,
        workers=(
            (
                *WORKER,
                "bench.peers.celery_app",
                "worker",
                "-P",
                pool,
                "-c",
                str(concurrency),
                "-Q",
                celery_app.QUEUE,
                "-n",
                f"{pool}-{os.getpid()}@%h",
                *QUIET,
            ),
        ),
        send=send,
        config=f"`-P {pool} -c {concurrency}`, JSON, no result backend, early ack, prefetch ×4",
        history="none",
        durable="nothing waits: `delay` returns once the message is written to the socket",
        confirms="off (Celery's default)",
        concurrency=f"{concurrency} processes" if pool == "prefork" else f"1 process × {concurrency} threads",
    )


def with_results(key: str, label: str, reuse: int | None) -> Peer:
    tuning = f", `CELERY_DB_REUSE_MAX = {reuse}`" if reuse else " (a new database connection per task)"
    return Peer(
        key=key,
        label=label,
        family="celery",
        tracked=True,
        database="fj_bench_celery_results",
        queue=celery_results.QUEUE,
        tables=("django_celery_results_taskresult",),
        workers=tuple(
            (
                *WORKER,
                "bench.peers.celery_results",
                "worker",
                "-P",
                "threads",
                "-c",
                str(THREADS),
                "-Q",
                celery_results.QUEUE,
                "-n",
                f"{key}{index}-{os.getpid()}@%h",
                *QUIET,
            )
            for index in range(PROCESSES)
        ),
        worker_env={"FJ_BENCH_CELERY_DB_REUSE_MAX": str(reuse or "")},
        send=send_results,
        history_sql=(
            "SELECT count(*), extract(epoch FROM max(date_done)) FROM django_celery_results_taskresult "
            "WHERE status = 'SUCCESS'"
        ),
        min_rate=30.0,
        config=(
            f"django-celery-results `django-db` backend, `task_track_started`, `result_extended`; "
            f"{PROCESSES} workers × `-P threads -c {THREADS}`{tuning}"
        ),
        history="a `TaskResult` row, written by the worker: STARTED, then SUCCESS",
        durable="nothing waits: `delay` writes no row and returns once the message is written to the socket",
        confirms="off (Celery's default)",
        concurrency=THREADED,
    )


PREFORK_POOL = bare("prefork", PROCESSES)
THREAD_POOL = bare("threads", THREADS)
RESULTS = with_results("celery_results", "Celery + results", None)
RESULTS_REUSE = with_results("celery_results_reuse", "Celery + results, reuse", REUSE_MAX)
