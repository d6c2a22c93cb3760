"""The outbox relay: publishes runs whose row was committed but whose message never reached the broker.

That happens when the broker was down or blocked at ``enqueue()`` time under
``FUSION_JOBS_ON_PUBLISH_ERROR="outbox"``, when a process died between commit and publish, or
when a retry could not be re-published during an outage. The relay runs inside ``rundramatiq``
and ``runcrons`` and as ``manage.py relayjobs``; several relays may run at once (rows are taken
with ``SKIP LOCKED``), and a run published twice still executes once per attempt because the
worker checks the run's state before running it.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from django.db import close_old_connections, transaction
from django.utils import timezone

from .exceptions import PublishError, UnknownTaskError
from .models import JobRun, RunMode, RunStatus
from .recording import db_alias
from .registry import get_task

logger = logging.getLogger("fusion_jobs.relay")

#: A run this young may still be published by the process that enqueued it (on_commit).
MIN_AGE_SECONDS = 10.0


def _retries_done(run: JobRun) -> int:
    return sum(1 for entry in run.attempt_log if entry.get("outcome") in ("failed", "timed_out"))


def relay_once(*, limit: int = 500, now: datetime | None = None, min_age: float | None = None) -> int:
    """Publish up to ``limit`` unpublished runs, oldest first; return how many were published."""
    from .backends.broker import publish_many

    now = now or timezone.now()
    age = MIN_AGE_SECONDS if min_age is None else min_age
    alias = db_alias()
    published = 0
    with transaction.atomic(using=alias):
        rows = list(
            JobRun.objects.using(alias)
            .select_for_update(skip_locked=True)
            .filter(
                mode=RunMode.WORKER,
                status__in=[RunStatus.QUEUED, RunStatus.RETRYING],
                published_at__isnull=True,
                enqueued_at__lte=now - timedelta(seconds=age),
            )
            .order_by("enqueued_at")[:limit]
        )
        if not rows:
            return 0
        batch = []
        for run in rows:
            try:
                task_obj = get_task(run.task_name)
            except UnknownTaskError:
                JobRun.objects.using(alias).filter(pk=run.pk).update(
                    status=RunStatus.FAILED,
                    finished_at=now,
                    error=f"UnknownTaskError: no task named {run.task_name!r} is registered (relay)",
                )
                continue
            delay_ms = None
            if run.status == RunStatus.RETRYING and run.next_attempt_at and run.next_attempt_at > now:
                delay_ms = int((run.next_attempt_at - now).total_seconds() * 1000)
            batch.append((task_obj, str(run.pk), run, delay_ms))
        for start in range(0, len(batch), 100):
            chunk = batch[start : start + 100]
            publish_many(
                [(t, rid, dict(run.kwargs), delay) for t, rid, run, delay in chunk],
                retries=[_retries_done(run) for _, _, run, _ in chunk],
            )
            JobRun.objects.using(alias).filter(pk__in=[rid for _, rid, _, _ in chunk]).update(
                published_at=timezone.now()
            )
            published += len(chunk)
    if published:
        logger.info("relay published %d run(s) that had not reached the broker", published)
    return published


def relay_forever(*, interval: float = 5.0, stop: threading.Event | None = None) -> None:
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
            backoff = min(backoff * 2, 60.0)
        except Exception:
            logger.exception("relay: error, will retry")
            backoff = min(backoff * 2, 60.0)
        stop.wait(backoff)


def start_relay_thread(interval: float = 5.0) -> threading.Event:
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
