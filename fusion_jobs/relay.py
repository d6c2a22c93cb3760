"""The outbox relay: publishes runs whose row is in PostgreSQL but whose message is not on the broker.

Two kinds of runs wait there. Runs that are *due*: a retry's backoff, a run deferred with
``enqueue_at()``, or a delayed message a worker parked, each held as ``next_attempt_at`` with
``published_at`` NULL and published when that time comes (never as a delayed message: one held
unacked in a worker's prefetch is closed and redelivered in a loop by RabbitMQ's
``consumer_timeout``). And runs that were *lost on the way*: the broker was down or blocked at
``enqueue()`` time under ``FUSION_JOBS_ON_PUBLISH_ERROR="outbox"``, or a process died between
commit and publish.

The relay runs in every ``rundramatiq`` worker process and in ``runcrons`` (polling every second,
so a due run is published within about a second of its time) and as ``manage.py relayjobs``.
Several relays may run at once. Each works chunk by chunk and never holds a row lock across
network I/O: it *claims* a chunk in a short transaction (rows taken with ``SKIP LOCKED`` and
leased by moving ``next_attempt_at`` a lease ahead, so no other relay takes them), publishes the
chunk with no transaction open, then marks that chunk published. A failed chunk is released for
the next pass and leaves the marks of earlier chunks, whose messages are on the broker, in place.
A relay that dies mid-chunk leaves its lease to expire, after which the chunk is published again:
a run may be published twice, and each attempt still executes once, because the worker checks the
run's state before running it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, close_old_connections, transaction
from django.db.models import Case, DateTimeField, Value, When
from django.utils import timezone

from . import metrics
from .conf import jobs_settings
from .exceptions import PublishError, UnknownTaskError
from .models import FAILED_STATUSES, WAITING_STATUSES, JobRun, RunMode, RunStatus
from .outbox import Outgoing, publish_and_mark
from .recording import db_alias
from .registry import Task, get_task

logger = logging.getLogger("fusion_jobs.relay")

#: A run this young may still be published by the process that enqueued it (on_commit).
MIN_AGE_SECONDS = 10.0
#: Runs published per claim, publish and mark.
CHUNK_SIZE = 100
#: How often the relay looks for due runs: the promptness of a delayed start or a retry.
POLL_INTERVAL = 1.0
#: Longest wait between two passes while the broker or the database is failing: retries and
#: delayed starts are due again soon after an outage ends.
MAX_BACKOFF = 10.0


def lease_seconds() -> float:
    """How long a claimed chunk is left to its relay before another may publish it again."""
    return max(30.0, 10 * float(jobs_settings.PUBLISH_TIMEOUT))


def _retries_done(run: JobRun) -> int:
    return sum(1 for entry in run.attempt_log if entry.get("outcome") in FAILED_STATUSES)


@dataclass
class _Claimed:
    run: JobRun
    task: Task
    not_before: datetime | None  # next_attempt_at before the lease, put back by the mark


def _waiting(alias: str) -> Any:
    return JobRun.objects.using(alias).filter(mode=RunMode.WORKER, published_at__isnull=True)


def due_runs(alias: str, now: datetime) -> Any:
    """Runs whose time has come, earliest first: one range scan of the partial index ``fj_run_due``."""
    return (
        _waiting(alias)
        .filter(status__in=WAITING_STATUSES, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
    )


def lost_runs(alias: str, enqueued_before: datetime) -> Any:
    """Queued runs that never reached the broker, oldest first (partial index ``fj_run_unpublished``)."""
    return (
        _waiting(alias)
        .filter(status=RunStatus.QUEUED, next_attempt_at__isnull=True, enqueued_at__lte=enqueued_before)
        .order_by("enqueued_at")
    )


def _not_in_this_process(**kwargs: Any) -> None:
    raise UnknownTaskError("a stand-in for routing only")  # never called: the relay only publishes


def _task_for(run: JobRun) -> Task:
    """The run's task, or a stand-in routed by the row when this process does not know the task.

    During a rolling deploy a relay on the old code meets runs of tasks only the new code has:
    publishing them to their queue lets a worker that knows the task run them, and a worker that
    does not dead-letters the message with a failed run, as for any enqueue. Failing them here
    would lose every retry and deferred start of a new task while old processes are still up.
    """
    try:
        return get_task(run.task_name)
    except UnknownTaskError:
        logger.info(
            "relay: publishing run %s of %r, a task this process does not know", run.pk, run.task_name
        )
        return Task(fn=_not_in_this_process, name=run.task_name, queue=run.queue or None)


def _claim(alias: str, now: datetime, min_age: float, limit: int) -> tuple[list[_Claimed], datetime]:
    """Take up to ``limit`` runs to publish and lease them; returns them and the lease's end.

    Due runs first (``fj_run_due``: ``next_attempt_at <= now``), then runs lost on the way that
    are older than ``min_age`` (``fj_run_unpublished``). One short transaction, no network I/O.
    """
    lease = now + timedelta(seconds=lease_seconds())
    fields = ("id", "task_name", "queue", "kwargs", "status", "attempt_log", "next_attempt_at")
    with transaction.atomic(using=alias):
        due = due_runs(alias, now).select_for_update(skip_locked=True).only(*fields)
        rows = list(due[:limit])
        if len(rows) < limit:
            lost = lost_runs(alias, now - timedelta(seconds=min_age))
            rows += list(lost.select_for_update(skip_locked=True).only(*fields)[: limit - len(rows)])
        claimed = [_Claimed(run, _task_for(run), run.next_attempt_at) for run in rows]
        if claimed:
            JobRun.objects.using(alias).filter(pk__in=[c.run.pk for c in claimed]).update(
                next_attempt_at=lease
            )
    return claimed, lease


def _not_before(chunk: list[_Claimed]) -> Any:
    """Each run's ``next_attempt_at`` as it was before the lease (NULL for a run lost on the way)."""
    times = [When(pk=c.run.pk, then=Value(c.not_before)) for c in chunk if c.not_before is not None]
    if not times:
        return Value(None, output_field=DateTimeField())
    return Case(*times, default=Value(None), output_field=DateTimeField())


def _settle(alias: str, chunk: list[_Claimed], lease: datetime, *, published: bool) -> None:
    """Mark a published chunk (or release an unpublished one), where our lease still holds.

    A run whose worker already started it has no lease any more (the start clears
    ``next_attempt_at`` and sets ``published_at``): it is left as the worker wrote it.
    """
    rows = JobRun.objects.using(alias).filter(
        pk__in=[c.run.pk for c in chunk], next_attempt_at=lease, published_at__isnull=True
    )
    changes: dict[str, Any] = {"next_attempt_at": _not_before(chunk)}
    if published:
        changes["published_at"] = timezone.now()
    rows.update(**changes)


def _mark_chunk(alias: str, chunk: list[_Claimed], lease: datetime) -> Callable[[Sequence[Outgoing]], None]:
    def mark(_messages: Sequence[Outgoing]) -> None:
        try:
            _settle(alias, chunk, lease, published=True)
        except DatabaseError as exc:
            # On the broker already: left leased, so they are published again only after the
            # lease, and the workers mark them when they start.
            logger.warning("relay: %d published run(s) could not be marked so: %s", len(chunk), exc)

    return mark


def relay_once(*, limit: int = 500, now: datetime | None = None, min_age: float | None = None) -> int:
    """Publish up to ``limit`` waiting runs, due ones first; return how many were published.

    Chunk by chunk: claim, publish with no transaction open, mark. ``PublishError`` is raised
    after releasing the failed chunk; the chunks before it stay marked.
    """
    age = MIN_AGE_SECONDS if min_age is None else min_age
    alias = db_alias()
    published = 0
    while published < limit:
        claimed, lease = _claim(alias, now or timezone.now(), age, min(CHUNK_SIZE, limit - published))
        if not claimed:
            break
        messages = [
            Outgoing(c.task, str(c.run.pk), dict(c.run.kwargs), retries=_retries_done(c.run)) for c in claimed
        ]
        try:
            unpublished = publish_and_mark(messages, mark=_mark_chunk(alias, claimed, lease))
        except Exception:
            _settle(alias, claimed, lease, published=False)
            raise
        if unpublished is not None:
            _settle(alias, claimed, lease, published=False)
            raise unpublished.error
        published += len(claimed)
        if len(claimed) < CHUNK_SIZE:
            break
    if published:
        metrics.relay_published(published)
        logger.info("relay published %d waiting run(s)", published)
    return published


def relay_forever(*, interval: float = POLL_INTERVAL, stop: threading.Event | None = None) -> None:
    """Relay every ``interval`` seconds until ``stop`` is set; broker or DB errors wait and retry."""
    stop = stop or threading.Event()
    backoff = interval
    while not stop.is_set():
        close_old_connections()
        try:
            count = relay_once()
            backoff = interval
            if count:
                continue  # more may be waiting
        except PublishError as exc:
            logger.warning("relay: broker unavailable, will retry: %s", exc)
            backoff = min(max(backoff, 1.0) * 2, MAX_BACKOFF)
        except DatabaseError as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            logger.warning("relay: database unavailable, will retry: %s", first_line)
            backoff = min(max(backoff, 1.0) * 2, MAX_BACKOFF)
        except Exception:
            logger.exception("relay: error, will retry")
            backoff = min(max(backoff, 1.0) * 2, MAX_BACKOFF)
        stop.wait(backoff)


def start_relay_thread(interval: float = POLL_INTERVAL) -> threading.Event:
    """Run the relay in a daemon thread of a long-lived process; set the returned event to stop it."""
    stop = threading.Event()
    thread = threading.Thread(
        target=relay_forever,
        kwargs={"interval": interval, "stop": stop},
        name="fusion-jobs-relay",
        daemon=True,
    )
    thread.start()
    return stop


def park(run_id: str, *, task_name: str, queue: str, kwargs: dict[str, Any], not_before: datetime) -> str:
    """Hold a delayed message's run in the database until ``not_before``; the relay publishes it then.

    Returns what became of it: ``"parked"`` (the waiting run now waits here, unpublished),
    ``"created"`` (no row: one is written, as a worker would for any message without a row) or
    ``"stale"`` (the run is running or finished: the delayed copy has nothing left to do).
    """
    alias = db_alias()
    with transaction.atomic(using=alias):
        waiting = (
            JobRun.objects.using(alias)
            .filter(pk=run_id, mode=RunMode.WORKER, status__in=WAITING_STATUSES)
            .update(next_attempt_at=not_before, published_at=None)
        )
        if waiting:
            return "parked"
        if JobRun.objects.using(alias).filter(pk=run_id).exists():
            return "stale"
        task_obj = get_task(task_name)
        JobRun.objects.using(alias).bulk_create(
            [
                JobRun.new_run(
                    task_obj,
                    kwargs,
                    id=run_id,
                    queue=queue or task_obj.effective_queue,
                    next_attempt_at=not_before,
                    enqueued_by="delayed message without a run row",
                )
            ],
            ignore_conflicts=True,
        )
    return "created"


__all__ = ["park", "relay_forever", "relay_once", "start_relay_thread"]
