"""The stored buckets: recomputed from the runs (``refresh_rollup``), read back as cells."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..models import EXECUTED_STATUSES, JobRun, RollupState, RunRollup
from ..recording import db_alias
from ..retention import retention_cutoff
from .cells import OUTCOMES, Cell, Cells, Dist, floor_time, merge_cells

#: Stored resolutions in seconds. Minutes are recomputed from runs; the others are sums of minutes.
MINUTE = 60
RESOLUTIONS = (MINUTE, 900, 3600)
#: Each refresh recomputes this far before its watermark, for runs whose end was written late.
LAG = timedelta(minutes=10)
#: A refresh works in slices of this length (each its own transaction), so a backfill of weeks
#: neither holds one long transaction nor a week of minute buckets in memory.
SLICE = timedelta(hours=6)
STATE = "runs"

RUN_FIELDS = ("task_name", "status", "attempts", "enqueued_at", "scheduled_for", "started_at", "finished_at")


def _add_run(cells: Cells, resolution: int, row: tuple[Any, ...]) -> None:
    task_name, status, attempts, enqueued_at, scheduled_for, started_at, finished_at = row
    cell = cells.setdefault((floor_time(finished_at, resolution), task_name), Cell())
    cell.counts[status] = cell.counts.get(status, 0) + 1
    if status in EXECUTED_STATUSES and started_at is not None:
        cell.duration.add((finished_at - started_at).total_seconds())
        if attempts <= 1:
            due = max(enqueued_at, scheduled_for) if scheduled_for else enqueued_at
            cell.wait.add((started_at - due).total_seconds())


def cells_from_runs(start: datetime, end: datetime, resolution: int, task_name: str | None = None) -> Cells:
    """Runs that ended in ``[start, end)``, bucketed: the same numbers a stored bucket holds."""
    runs = JobRun.objects.using(db_alias()).filter(
        finished_at__gte=start, finished_at__lt=end, status__in=OUTCOMES
    )
    if task_name is not None:
        runs = runs.filter(task_name=task_name)
    cells: Cells = {}
    for row in runs.order_by().values_list(*RUN_FIELDS).iterator(chunk_size=5000):
        _add_run(cells, resolution, row)
    return cells


def cells_from_rollup(
    resolution: int, start: datetime, end: datetime, into: int, task_name: str | None = None
) -> Cells:
    """Stored buckets of ``resolution`` in ``[start, end)``, summed into buckets of ``into`` seconds."""
    rows = RunRollup.objects.using(db_alias()).filter(
        resolution=resolution, bucket__gte=start, bucket__lt=end
    )
    if task_name is not None:
        rows = rows.filter(task_name=task_name)
    cells: Cells = {}
    for row in rows.order_by().iterator(chunk_size=5000):
        merge_cells(cells, {(floor_time(row.bucket, into), row.task_name): _cell_of(row)})
    return cells


def _cell_of(row: RunRollup) -> Cell:
    return Cell(
        counts={o: getattr(row, o) for o in OUTCOMES if getattr(row, o)},
        duration=Dist(
            sum(row.duration_hist.values()),
            row.duration_sum,
            row.duration_min,
            row.duration_max,
            {int(k): v for k, v in row.duration_hist.items()},
        ),
        wait=Dist(
            row.wait_count,
            row.wait_sum,
            row.wait_min,
            row.wait_max,
            {int(k): v for k, v in row.wait_hist.items()},
        ),
    )


def _rows_of(cells: Cells, resolution: int) -> Iterator[RunRollup]:
    for (bucket, task_name), cell in cells.items():
        yield RunRollup(
            resolution=resolution,
            bucket=bucket,
            task_name=task_name,
            **{o: cell.counts.get(o, 0) for o in OUTCOMES},
            duration_sum=cell.duration.total,
            duration_min=cell.duration.low,
            duration_max=cell.duration.high,
            duration_hist={str(k): v for k, v in sorted(cell.duration.hist.items())},
            wait_count=cell.wait.count,
            wait_sum=cell.wait.total,
            wait_min=cell.wait.low,
            wait_max=cell.wait.high,
            wait_hist={str(k): v for k, v in sorted(cell.wait.hist.items())},
        )


@dataclass
class RefreshResult:
    start: datetime
    through: datetime
    minute_buckets: int
    pruned: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "through": self.through.isoformat(),
            "minute_buckets": self.minute_buckets,
            "pruned": self.pruned,
        }


def refresh_rollup(*, now: datetime | None = None) -> RefreshResult:
    """Recompute the buckets from the watermark minus :data:`LAG` up to the current minute; prune old ones.

    The first refresh starts at the retention cutoff (a backfill of every kept run), in slices.
    """
    now = now or timezone.now()
    alias = db_alias()
    cutoff = floor_time(retention_cutoff(now=now), 3600)
    end = floor_time(now, MINUTE)
    state, _ = RollupState.objects.using(alias).get_or_create(name=STATE)
    through = state.through
    start = max(cutoff, floor_time(min(through, end) - LAG, MINUTE)) if through else cutoff
    first = start
    written = 0
    while start < end:
        stop = min(end, floor_time(start, 3600) + SLICE)
        written += _refresh_slice(alias, start, stop)
        start = stop
    with transaction.atomic(using=alias):
        pruned, _ = RunRollup.objects.using(alias).filter(bucket__lt=cutoff).delete()
    return RefreshResult(first, end, written, pruned)


def _refresh_slice(alias: str, start: datetime, stop: datetime) -> int:
    with transaction.atomic(using=alias):
        # One refresher at a time: a second one waits here, then recomputes from fresh runs.
        state = RollupState.objects.using(alias).select_for_update().get(name=STATE)
        rollups = RunRollup.objects.using(alias)
        minutes = cells_from_runs(start, stop, MINUTE)
        rollups.filter(resolution=MINUTE, bucket__gte=start, bucket__lt=stop).delete()
        rollups.bulk_create(_rows_of(minutes, MINUTE), batch_size=1000)
        for resolution in RESOLUTIONS[1:]:
            low = floor_time(start, resolution)
            coarse = cells_from_rollup(MINUTE, low, stop, resolution)
            rollups.filter(resolution=resolution, bucket__gte=low, bucket__lt=stop).delete()
            rollups.bulk_create(_rows_of(coarse, resolution), batch_size=1000)
        if state.through is None or state.through < stop:
            state.through = stop
            state.save(update_fields=["through"])
    return len(minutes)


def watermark() -> datetime | None:
    state = RollupState.objects.using(db_alias()).filter(name=STATE).first()
    return state.through if state else None
