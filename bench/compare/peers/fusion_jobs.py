"""fusion-jobs: ``enqueue()`` / ``enqueue_many()`` and ``manage.py rundramatiq``, through its public API only."""

from __future__ import annotations

from bench.app.tasks import QUEUE, noop
from bench.compare.peer import Peer
from bench.compare.services import DB, PROCESSES, THREADED, THREADS
from fusion_jobs import enqueue, enqueue_many
from fusion_jobs.backends.broker import flush_publishes
from fusion_jobs.marking import flush_marks

#: Bare Dramatiq's default prefetch (twice the threads), given to fusion-jobs' worker too so both
#: take the same number of messages ahead; rundramatiq's own default is one per thread.
PREFETCH = 2 * THREADS


def send(p: str) -> None:
    enqueue(noop, p=p)


def send_batch(p: str, size: int) -> None:
    enqueue_many(noop, [{"p": p}] * size)


def settle() -> None:
    """``enqueue_many()`` returns once its rows are committed; its messages are still streaming."""
    flush_publishes(60)
    flush_marks(60)


PEER = Peer(
    key="fusion_jobs",
    label="fusion-jobs",
    family="fj",
    tracked=True,
    database=DB,
    queue=QUEUE,
    tables=("fusion_jobs_jobrun",),
    workers=(
        (
            "manage.py",
            "rundramatiq",
            "-p",
            str(PROCESSES),
            "-t",
            str(THREADS),
            "-Q",
            QUEUE,
            "--prefetch",
            str(PREFETCH),
        ),
    ),
    send=send,
    send_batch=send_batch,
    settle=settle,
    history_sql=(
        "SELECT count(*), extract(epoch FROM max(finished_at)) FROM fusion_jobs_jobrun WHERE status = 'succeeded'"
    ),
    config=f"`manage.py rundramatiq -p {PROCESSES} -t {THREADS} --prefetch {PREFETCH}` (Dramatiq's default prefetch)",
    history="a `JobRun` row: inserted at enqueue, updated at start and end (the worker batches its writes)",
    durable="the run, as the library documents: its row committed or its message confirmed",
    confirms="on",
    concurrency=THREADED,
)
