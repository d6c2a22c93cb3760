"""Marks on a run outside its attempts: published, skipped, cancelled, and an attempt's progress."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import DatabaseError, connections, transaction
from django.utils import timezone

from ..models import TERMINAL_STATUSES, JobRun, RunStatus
from . import sql
from .places import db_alias
from .transitions import Attempt

logger = logging.getLogger("fusion_jobs.runs")


def mark_skipped(run_id: str, reason: str) -> None:
    JobRun.objects.using(db_alias()).filter(pk=run_id).exclude(status__in=TERMINAL_STATUSES).update(
        status=RunStatus.SKIPPED, skip_reason=reason[:200], finished_at=timezone.now()
    )


def mark_published(run_id: str) -> None:
    """Note that the run's message reached the broker, so the outbox relay leaves it alone.

    On PostgreSQL, outside a caller's transaction, this commit doesn't wait for the disk: the mark
    is a hint, and losing it in a database crash only makes the relay publish the run again, a
    duplicate that the worker skips. That saves an fsync on every ``enqueue()``. For the same
    reason a database error here is logged, not raised: the message is already on the broker,
    and raising would make the caller enqueue the work a second time.
    """
    alias = db_alias()
    connection = connections[alias]
    now = timezone.now()
    try:
        if sql.alone(connection):
            sql.mark_published_not_durable(connection, run_id, now)
        else:
            JobRun.objects.using(alias).filter(pk=run_id, published_at__isnull=True).update(published_at=now)
    except DatabaseError as exc:
        logger.warning(
            "run %s was published but could not be marked so (%s); the worker will mark it", run_id, exc
        )


def mark_published_late(run_ids: list[str]) -> None:
    """Mark runs published some time after their messages were confirmed (``fusion_jobs.marking``).

    Only a run never started and not held for a later time (queued, or cancelled meanwhile). By
    the time a late mark is written a worker may have taken the run and put it back for a retry
    (or parked it), unpublished on purpose for the relay to publish when due; marking it would
    strand it. ``SKIP LOCKED``: a row locked now is most likely a worker starting the run, and the start
    sets ``published_at`` itself; waiting could only delay the start (or deadlock with a batch
    that takes the rows in another order). A run skipped otherwise is at worst published again
    by the relay, and the worker skips the copy. On PostgreSQL, one statement whose commit
    doesn't wait for the disk (a lost mark costs only a copy the worker skips, as in
    :func:`mark_published`).
    """
    alias = db_alias()
    connection = connections[alias]
    if sql.alone(connection):
        sql.mark_published_late_not_durable(connection, run_ids, timezone.now())
        return
    with transaction.atomic(using=alias):
        free = list(
            JobRun.objects.using(alias)
            .filter(
                pk__in=run_ids,
                published_at__isnull=True,
                attempts=0,
                next_attempt_at__isnull=True,
            )
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)
        )
        if free:
            JobRun.objects.using(alias).filter(pk__in=free).update(published_at=timezone.now())


def cancel(run_ids: list[str]) -> int:
    """Cancel queued or retrying runs; a worker skips their message when it arrives."""
    return (
        JobRun.objects.using(db_alias())
        .filter(pk__in=run_ids, status__in=[RunStatus.QUEUED, RunStatus.RETRYING])
        .update(status=RunStatus.CANCELLED, finished_at=timezone.now(), skip_reason="cancelled")
    )


def write_progress(
    attempt: Attempt, stage: str, done: int | None, total: int | None, *, now: datetime | None = None
) -> None:
    """The attempt's progress, and a heartbeat; nothing once a newer attempt owns the run."""
    JobRun.objects.using(db_alias()).filter(
        pk=attempt.run_id, attempts=attempt.attempt, status=RunStatus.RUNNING
    ).update(
        progress_stage=stage[:100],
        progress_done=done,
        progress_total=total,
        heartbeat_at=now or timezone.now(),
    )
