"""Per-task, per-time-bucket summaries of ended runs, so the dashboard's charts never scan a week of runs.

A bucket holds the runs that *ended* in it (``finished_at``): counts by outcome, the sum, min, max
and a histogram of durations (``started_at`` → ``finished_at``) and of queue waits (``enqueued_at``,
or the cron tick ``scheduled_for`` when later, → ``started_at``; first attempts only: a retried
run's last wait is not stored on the run). Histograms use fixed log bins (a factor of 2^(1/4),
about 9% wide), so percentiles merged over any span are within a bin of exact, and are clamped to
the span's exact min and max.

:func:`refresh_rollup` *recomputes* whole minute buckets from the runs (delete then insert, under a
row lock on :class:`~fusion_jobs.models.RollupState`) and sums them into the 15-minute and hourly
buckets, so running it twice, or after a writer retried a batch, gives the same rows: it counts
runs, never events. It recomputes the last :data:`LAG` before its watermark each time, which takes
in runs whose end was written late. Rows older than ``FUSION_JOBS_RUN_RETENTION_DAYS`` are deleted
with it, like the runs they summarise. ``runcrons`` runs it every minute (``fusion-jobs-rollup``);
the dashboard reads stored buckets up to the watermark and the runs after it, so it is exact even
when the cron is late or off (only slower).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from .models import JobRun, RollupState, RunRollup
from .recording import db_alias
from .retention import retention_cutoff

#: Stored resolutions in seconds. Minutes are recomputed from runs; the others are sums of minutes.
MINUTE = 60
RESOLUTIONS = (MINUTE, 900, 3600)
#: Each refresh recomputes this far before its watermark, for runs whose end was written late.
LAG = timedelta(minutes=10)
#: A refresh works in slices of this length (each its own transaction), so a backfill of weeks
#: neither holds one long transaction nor a week of minute buckets in memory.
SLICE = timedelta(hours=6)
STATE = "runs"
OUTCOMES = ("succeeded", "failed", "timed_out", "cancelled", "skipped")
EXECUTED = ("succeeded", "failed", "timed_out")
FAILED = ("failed", "timed_out")
#: Histogram bins: bin 0 is [0, 1 ms); bin k >= 1 is [1 ms * F**(k-1), 1 ms * F**k); the last is open.
HIST_BASE = 0.001
HIST_FACTOR = 2**0.25
HIST_BINS = 120  # up to ~ 1.15e6 s (13 days)
_LOG_FACTOR = math.log(HIST_FACTOR)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def hist_bin(seconds: float) -> int:
    if seconds < HIST_BASE:
        return 0
    return min(HIST_BINS - 1, 1 + int(math.log(seconds / HIST_BASE) / _LOG_FACTOR))


def bin_bounds(index: int) -> tuple[float, float]:
    if index == 0:
        return 0.0, HIST_BASE
    return HIST_BASE * HIST_FACTOR ** (index - 1), HIST_BASE * HIST_FACTOR**index


def floor_time(moment: datetime, seconds: int) -> datetime:
    """The start of the ``seconds``-long bucket holding ``moment`` (buckets aligned on the epoch, UTC)."""
    offset = int((moment - _EPOCH).total_seconds() // seconds) * seconds
    return _EPOCH + timedelta(seconds=offset)


@dataclass
class Dist:
    """A mergeable distribution: count, sum, min, max and a sparse log-bin histogram."""

    count: int = 0
    total: float = 0.0
    low: float | None = None
    high: float | None = None
    hist: dict[int, int] = field(default_factory=dict)
    _percentiles: dict[tuple[float, int], float] = field(default_factory=dict, repr=False, compare=False)

    def add(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.count += 1
        self.total += seconds
        self.low = seconds if self.low is None else min(self.low, seconds)
        self.high = seconds if self.high is None else max(self.high, seconds)
        index = hist_bin(seconds)
        self.hist[index] = self.hist.get(index, 0) + 1

    def merge(self, other: Dist) -> None:
        if not other.count:
            return
        self.count += other.count
        self.total += other.total
        self.low = other.low if self.low is None else min(self.low, other.low or 0.0)
        self.high = other.high if self.high is None else max(self.high, other.high or 0.0)
        for index, n in other.hist.items():
            self.hist[index] = self.hist.get(index, 0) + n

    def percentile(self, fraction: float) -> float | None:
        """The value below which ``fraction`` of the values lie, interpolated inside its log bin."""
        if not self.count:
            return None
        key = (fraction, self.count)
        if key not in self._percentiles:  # a chart and its table ask for the same ones
            self._percentiles[key] = self._percentile(fraction)
        return self._percentiles[key]

    def _percentile(self, fraction: float) -> float:
        rank = fraction * self.count
        seen = 0
        for index in sorted(self.hist):
            n = self.hist[index]
            if seen + n >= rank:
                low, high = bin_bounds(index)
                share = (rank - seen) / n if n else 0.0
                value = low + (high - low) * share if index == 0 else low * (high / low) ** share
                break
            seen += n
        else:
            value = self.high or 0.0
        return min(max(value, self.low or 0.0), self.high if self.high is not None else value)

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None


@dataclass
class Cell:
    """Runs of one task that ended in one bucket."""

    counts: dict[str, int] = field(default_factory=dict)
    duration: Dist = field(default_factory=Dist)
    wait: Dist = field(default_factory=Dist)

    def merge(self, other: Cell) -> None:
        for outcome, n in other.counts.items():
            self.counts[outcome] = self.counts.get(outcome, 0) + n
        self.duration.merge(other.duration)
        self.wait.merge(other.wait)

    @property
    def executed(self) -> int:
        return sum(self.counts.get(o, 0) for o in EXECUTED)

    @property
    def failed(self) -> int:
        return sum(self.counts.get(o, 0) for o in FAILED)

    @property
    def ended(self) -> int:
        return sum(self.counts.values())

    @property
    def failure_rate(self) -> float | None:
        return self.failed / self.executed if self.executed else None


Cells = dict[tuple[datetime, str], Cell]

RUN_FIELDS = ("task_name", "status", "attempts", "enqueued_at", "scheduled_for", "started_at", "finished_at")


def _add_run(cells: Cells, resolution: int, row: tuple[Any, ...]) -> None:
    task_name, status, attempts, enqueued_at, scheduled_for, started_at, finished_at = row
    cell = cells.setdefault((floor_time(finished_at, resolution), task_name), Cell())
    cell.counts[status] = cell.counts.get(status, 0) + 1
    if status in EXECUTED and started_at is not None:
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
        key = (floor_time(row.bucket, into), row.task_name)
        existing = cells.get(key)
        cell = _cell_of(row)
        if existing is None:
            cells[key] = cell
        else:
            existing.merge(cell)
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


def window_cells(
    since: datetime, now: datetime, resolution: int, task_name: str | None = None
) -> tuple[Cells, datetime | None]:
    """Runs that ended in ``[since, now]`` in buckets of ``resolution`` (``since`` aligned on it).

    Stored ``resolution`` buckets wholly before the watermark, stored minutes up to it, runs after.
    Returns the cells and the watermark used.
    """
    mark = watermark()
    end = now + timedelta(microseconds=1)
    cells: Cells = {}
    if mark is None or mark <= since:
        return cells_from_runs(since, end, resolution, task_name), mark
    mark = min(mark, floor_time(now, MINUTE))
    whole = max(since, floor_time(mark, resolution))
    parts: Iterable[Cells] = (
        cells_from_rollup(resolution, since, whole, resolution, task_name),
        cells_from_rollup(MINUTE, whole, mark, resolution, task_name),
        cells_from_runs(mark, end, resolution, task_name),
    )
    for part in parts:
        for key, cell in part.items():
            existing = cells.get(key)
            if existing is None:
                cells[key] = cell
            else:
                existing.merge(cell)
    return cells, mark


@dataclass
class Summary:
    """A window's runs summed per bucket and per task; ``mark`` is the watermark used (None: all from runs)."""

    by_bucket: dict[datetime, Cell]
    by_task: dict[str, Cell]
    mark: datetime | None

    def add(self, cells: Cells) -> None:
        for (bucket, task_name), cell in cells.items():
            self.by_bucket.setdefault(bucket, Cell()).merge(cell)
            self.by_task.setdefault(task_name, Cell()).merge(cell)


def window_summary(since: datetime, now: datetime, resolution: int, task_name: str | None = None) -> Summary:
    """Like :func:`window_cells`, summed per bucket and per task; on PostgreSQL the stored part is
    summed by the database (``GROUPING SETS`` over ``jsonb_each_text``), so a week costs two queries
    over a few thousand rows instead of as many histogram merges in Python.
    """
    alias = db_alias()
    if connections[alias].vendor != "postgresql":
        cells, mark = window_cells(since, now, resolution, task_name)
        summary = Summary({}, {}, mark)
        summary.add(cells)
        return summary
    mark = watermark()
    end = now + timedelta(microseconds=1)
    if mark is None or mark <= since:
        summary = Summary({}, {}, mark)
        summary.add(cells_from_runs(since, end, resolution, task_name))
        return summary
    mark = min(mark, floor_time(now, MINUTE))
    whole = max(since, floor_time(mark, resolution))
    summary = _stored_summary(alias, resolution, since, whole, mark, task_name)
    summary.mark = mark
    summary.add(cells_from_runs(mark, end, resolution, task_name))
    return summary


_SOURCE_SQL = """
SELECT CASE WHEN resolution = %(res)s THEN bucket ELSE %(whole)s END AS b, task_name AS t, *
FROM {table}
WHERE ((resolution = %(res)s AND bucket >= %(since)s AND bucket < %(whole)s)
    OR (resolution = %(minute)s AND bucket >= %(whole)s AND bucket < %(mark)s))
  AND (%(task)s::text IS NULL OR task_name = %(task)s::text)
"""
_SCALARS_SQL = """
WITH src AS ({source})
SELECT b, t, SUM(succeeded), SUM(failed), SUM(timed_out), SUM(cancelled), SUM(skipped),
       SUM(duration_sum), MIN(duration_min), MAX(duration_max),
       SUM(wait_count), SUM(wait_sum), MIN(wait_min), MAX(wait_max)
FROM src GROUP BY GROUPING SETS ((b), (t))
"""
_HIST_SQL = """
WITH src AS ({source}),
bins AS (
    SELECT b, t, 'd' AS kind, h.key, SUM(h.value::int) AS n FROM src, jsonb_each_text(duration_hist) AS h
    GROUP BY GROUPING SETS ((b, h.key), (t, h.key))
    UNION ALL
    SELECT b, t, 'w', h.key, SUM(h.value::int) FROM src, jsonb_each_text(wait_hist) AS h
    GROUP BY GROUPING SETS ((b, h.key), (t, h.key))
)
SELECT b, t, kind, jsonb_object_agg(key, n)::text FROM bins GROUP BY b, t, kind
"""


def _stored_summary(
    alias: str, resolution: int, since: datetime, whole: datetime, mark: datetime, task_name: str | None
) -> Summary:
    source = _SOURCE_SQL.format(table=connections[alias].ops.quote_name(RunRollup._meta.db_table))
    params: dict[str, Any] = {
        "res": resolution,
        "minute": MINUTE,
        "since": since,
        "whole": whole,
        "mark": mark,
        "task": task_name,
    }
    summary = Summary({}, {}, None)

    def cell_of(bucket: datetime | None, task: str | None) -> Cell:
        if bucket is not None:
            return summary.by_bucket.setdefault(bucket, Cell())
        return summary.by_task.setdefault(task or "", Cell())

    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        # A week expands to ~100k (bucket, bin) rows: JIT compilation would cost more than the query
        # (its estimate of jsonb_each's rows crosses jit_above_cost), and the hash needs some memory.
        cursor.execute("SET LOCAL jit = off")
        cursor.execute("SET LOCAL work_mem = '32MB'")
        cursor.execute(_SCALARS_SQL.format(source=source), params)
        for bucket, task, *counts, d_sum, d_min, d_max, w_count, w_sum, w_min, w_max in cursor.fetchall():
            cell = cell_of(bucket, task)
            cell.counts = {o: int(n) for o, n in zip(OUTCOMES, counts, strict=True) if n}
            cell.duration.total, cell.duration.low, cell.duration.high = float(d_sum or 0), d_min, d_max
            cell.wait.count, cell.wait.total = int(w_count or 0), float(w_sum or 0)
            cell.wait.low, cell.wait.high = w_min, w_max
        cursor.execute(_HIST_SQL.format(source=source), params)
        for bucket, task, kind, bins in cursor.fetchall():
            dist = cell_of(bucket, task).duration if kind == "d" else cell_of(bucket, task).wait
            dist.hist = {int(index): int(n) for index, n in json.loads(bins).items()}
            if kind == "d":
                dist.count = sum(dist.hist.values())
    return summary
