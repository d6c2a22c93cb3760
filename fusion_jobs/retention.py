"""Pruning finished runs older than ``FUSION_JOBS_RUN_RETENTION_DAYS``, in small batches.

One ``DELETE`` of millions of rows would hold its locks and its transaction for minutes, bloat
the WAL in one go and block the autovacuum it creates work for. Here each batch is a short
transaction deleting at most ``batch_size`` primary keys, walked in ``finished_at`` order from
where the previous batch stopped, so no batch rescans what earlier ones deleted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from .conf import jobs_settings
from .models import TERMINAL_STATUSES, JobRun
from .recording import db_alias

DEFAULT_BATCH_SIZE = 1000


@dataclass
class PruneResult:
    cutoff: datetime
    matched: int
    deleted: int
    batches: int
    dry_run: bool
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff.isoformat(),
            "matched": self.matched,
            "deleted": self.deleted,
            "batches": self.batches,
            "dry_run": self.dry_run,
            "seconds": round(self.seconds, 3),
        }


def retention_cutoff(days: int | None = None, *, now: datetime | None = None) -> datetime:
    days = int(jobs_settings.RUN_RETENTION_DAYS) if days is None else int(days)
    if days < 0:
        raise ValueError(f"retention days must be >= 0, got {days}")
    return (now or timezone.now()) - timedelta(days=days)


def prunable(cutoff: datetime) -> QuerySet[JobRun]:
    """Finished runs older than ``cutoff``; a run that never recorded ``finished_at`` ages by ``enqueued_at``."""
    return (
        JobRun.objects.using(db_alias())
        .filter(status__in=TERMINAL_STATUSES)
        .filter(Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, enqueued_at__lt=cutoff))
    )


def prune_runs(
    *,
    days: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    now: datetime | None = None,
    progress: Callable[[str], Any] | None = None,
    pause: float = 0.0,
) -> PruneResult:
    """Delete finished runs older than ``days`` (default FUSION_JOBS_RUN_RETENTION_DAYS) in batches.

    ``progress`` receives one line per batch; ``pause`` seconds between batches leave room for
    other writers on a busy database. Runs that are queued, running or retrying are never touched.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    started = time.monotonic()
    cutoff = retention_cutoff(days, now=now)
    say = progress or (lambda _line: None)
    if dry_run:
        matched = prunable(cutoff).count()
        say(f"dry run: {matched} finished run(s) older than {cutoff.isoformat()} would be deleted")
        return PruneResult(cutoff, matched, 0, 0, True, time.monotonic() - started)
    deleted = batches = 0
    base = prunable(cutoff)
    for queryset, order_field in (
        (base.filter(finished_at__lt=cutoff), "finished_at"),
        (base.filter(finished_at__isnull=True), "enqueued_at"),
    ):
        for count in _delete_in_batches(queryset, order_field, batch_size, pause):
            deleted += count
            batches += 1
            say(f"batch {batches}: deleted {count} run(s), {deleted} so far")
    say(f"deleted {deleted} finished run(s) older than {cutoff.isoformat()} in {batches} batch(es)")
    return PruneResult(cutoff, deleted, deleted, batches, False, time.monotonic() - started)


def _delete_in_batches(queryset: QuerySet[JobRun], order_field: str, batch_size: int, pause: float) -> Any:
    """Yield the number deleted per batch, walking ``order_field`` upwards from the last batch."""
    position: datetime | None = None
    while True:
        page = queryset if position is None else queryset.filter(**{f"{order_field}__gte": position})
        rows = list(page.order_by(order_field, "pk").values_list("pk", order_field)[:batch_size])
        if not rows:
            return
        ids = [pk for pk, _value in rows]
        # only("pk"): the collector fetches ids alone to null the links to these runs (retries,
        # cron last_run) instead of loading every run's arguments, result and traceback.
        _total, per_model = JobRun.objects.using(queryset.db).filter(pk__in=ids).only("pk").delete()
        count = per_model.get(JobRun._meta.label, 0)
        if count:  # zero when another pruner got there first; those rows are gone either way
            yield count
        position = rows[-1][1]
        if pause:
            time.sleep(pause)
