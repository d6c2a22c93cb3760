"""The dashboard's statistics: every query behind it, and nothing that renders.

Over time (:func:`dashboard_charts`): throughput, failure rate, p50/p95 queue wait and duration per
bucket and per task, read from :mod:`fusion_jobs.rollup` (stored buckets up to its watermark, runs
after it), so a week on a table of millions of runs costs a few thousand small rows. Percentiles
come from the log-bin histograms: within one bin (about 9%) of exact, and never outside the exact
min and max.

Per task in a window (:func:`dashboard_stats`): counts by status, and the exact failure rate and
p50/p95 duration, in one scan of the runs (PostgreSQL's ``percentile_cont``); for a week, from the
rollup instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from .models import ACTIVE_STATUSES, EXECUTED_STATUSES, FAILED_STATUSES, JobRun, RunStatus
from .recording import db_alias
from .rollup import Cell, floor_time, window_summary

#: key: (label, window, bucket seconds, label format)
CHART_WINDOWS: dict[str, tuple[str, timedelta, int, str]] = {
    "1h": ("Last hour", timedelta(hours=1), 60, "%H:%M"),
    "24h": ("Last day", timedelta(days=1), 900, "%H:%M"),
    "7d": ("Last week", timedelta(days=7), 3600, "%a %H:00"),
}
#: Windows whose per-task table is read from the rollup, not counted from runs.
ROLLUP_TABLE_WINDOWS = frozenset({"7d"})
#: The SQLite/MySQL fallback computes percentiles in Python over at most this many runs.
PYTHON_PERCENTILE_ROWS = 200_000


def format_duration(seconds: float | None, *, precise: bool = False) -> str:
    """Seconds as a short human figure: 850 ms, 2.4 s, 3.5 min, 1.2 h.

    ``precise`` (the per-task table's exact percentiles): 2.43 s, 3 min 30 s, 1 h 12 min.
    """
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s" if precise else f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s" if precise else f"{seconds / 60:.1f} min"
    return (
        f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min" if precise else f"{seconds / 3600:.1f} h"
    )


def format_percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _rates(c: Cell) -> dict[str, str]:
    """The formatted failure rate and p50/p95 wait and duration of one table row."""
    return {
        "failure_rate": format_percent(c.failure_rate),
        "wait_p50": format_duration(c.wait.percentile(0.5)),
        "wait_p95": format_duration(c.wait.percentile(0.95)),
        "duration_p50": format_duration(c.duration.percentile(0.5)),
        "duration_p95": format_duration(c.duration.percentile(0.95)),
    }


@dataclass
class Point:
    start: datetime
    label: str
    cell: Cell

    def row(self) -> dict[str, Any]:
        c = self.cell
        return {
            "start": self.start,
            "label": self.label,
            "succeeded": c.counts.get(RunStatus.SUCCEEDED, 0),
            "failed": c.failed,
            "other": c.ended - c.executed,
            **_rates(c),
        }


@dataclass
class TaskSummary:
    task_name: str
    cell: Cell

    def row(self) -> dict[str, Any]:
        c = self.cell
        return {
            "task_name": self.task_name,
            "ended": c.ended,
            "executed": c.executed,
            "failed": c.failed,
            **_rates(c),
        }


@dataclass
class DashboardCharts:
    key: str
    label: str
    resolution: int
    since: datetime
    now: datetime
    task_name: str | None
    points: list[Point]
    tasks: list[TaskSummary]
    total: Cell
    watermark: datetime | None

    @property
    def bucket_label(self) -> str:
        return {60: "minute", 900: "15 minutes", 3600: "hour"}.get(self.resolution, f"{self.resolution} s")

    @property
    def scope(self) -> str:
        return f"task {self.task_name}" if self.task_name else "all tasks"

    @property
    def labels(self) -> list[str]:
        return [p.label for p in self.points]

    def point_rows(self) -> list[dict[str, Any]]:
        return [p.row() for p in self.points]

    def task_rows(self) -> list[dict[str, Any]]:
        return [t.row() for t in self.tasks]

    def total_row(self) -> dict[str, Any]:
        return TaskSummary("All tasks", self.total).row()


def dashboard_charts(
    key: str, *, task_name: str | None = None, now: datetime | None = None
) -> DashboardCharts:
    """The window's buckets (the last one still filling), per-task totals and the overall total."""
    label, window, resolution, label_format = CHART_WINDOWS[key]
    now = now or timezone.now()
    last = floor_time(now, resolution)
    count = int(window.total_seconds() // resolution)
    since = last - timedelta(seconds=resolution * (count - 1))
    summary = window_summary(since, now, resolution, task_name)
    by_bucket, by_task, mark = summary.by_bucket, summary.by_task, summary.mark
    total = Cell()
    for cell in by_task.values():
        total.merge(cell)
    points = []
    for i in range(count):
        start = since + timedelta(seconds=resolution * i)
        points.append(
            Point(start, timezone.localtime(start).strftime(label_format), by_bucket.get(start, Cell()))
        )
    tasks = sorted(
        (TaskSummary(name, cell) for name, cell in by_task.items()),
        key=lambda t: (-t.cell.ended, t.task_name),
    )
    return DashboardCharts(key, label, resolution, since, now, task_name, points, tasks, total, mark)


# --- Per task in a window ---------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks: what ``percentile_cont`` returns."""
    if not sorted_values:
        return None
    position = fraction * (len(sorted_values) - 1)
    low, high = math.floor(position), math.ceil(position)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


@dataclass
class TaskRow:
    task_name: str
    counts: dict[str, int] = field(default_factory=dict)
    finished: int = 0
    failed: int = 0
    p50: float | None = None
    p95: float | None = None

    @property
    def enqueued(self) -> int:
        return sum(self.counts.values())

    @property
    def failure_rate(self) -> float | None:
        return self.failed / self.finished if self.finished else None

    def cells(self, statuses: Iterable[str]) -> list[int]:
        return [self.counts.get(status, 0) for status in statuses]


@dataclass
class DashboardStats:
    window: timedelta
    since: datetime
    now: datetime
    tasks: list[TaskRow]
    statuses: list[str]
    total: TaskRow
    running: int
    queued: int
    retrying: int
    oldest_queued: JobRun | None
    percentiles_from: str

    @property
    def throughput_per_minute(self) -> float:
        return self.total.finished / (self.window.total_seconds() / 60)

    @property
    def oldest_queued_age(self) -> float | None:
        if self.oldest_queued is None:
            return None
        return (self.now - self.oldest_queued.enqueued_at).total_seconds()


def dashboard_stats(
    window: timedelta, *, now: datetime | None = None, summary: DashboardCharts | None = None
) -> DashboardStats:
    """Per-task counts by status (runs enqueued in the window); failure rate, p50/p95 duration and
    throughput of runs that finished in the window; what is running and queued right now.

    With ``summary`` (the rollup's totals for the window) the per-task figures come from it instead:
    counts by status of runs that *ended* in the window, percentiles from its histograms.
    """
    now = now or timezone.now()
    since = now - window
    alias = db_alias()
    runs = JobRun.objects.using(alias)
    rows: dict[str, TaskRow] = {}
    seen_statuses: set[str] = set()
    total = TaskRow("All tasks")
    if summary is not None:
        source = "rollup histograms (within ~9%)"
        for task in summary.tasks:
            rows[task.task_name] = _rollup_row(task.task_name, task.cell)
            seen_statuses.update(task.cell.counts)
        summed = _rollup_row(total.task_name, summary.total)
        total.finished, total.failed, total.p50, total.p95 = (
            summed.finished,
            summed.failed,
            summed.p50,
            summed.p95,
        )
    else:
        counts = (
            runs.filter(enqueued_at__gt=since, enqueued_at__lte=now)
            .values_list("task_name", "status")
            .annotate(n=Count("*"))
            .order_by()
        )
        for task_name, status, n in counts:
            rows.setdefault(task_name, TaskRow(task_name)).counts[status] = n
            seen_statuses.add(status)
        if connections[alias].vendor == "postgresql":
            source = "PostgreSQL percentile_cont"
            postgresql_finished_stats(alias, since, now, rows, total)
        else:
            source = "computed in Python"
            python_finished_stats(finished_runs(runs, since, now), rows, total)
    for row in rows.values():
        for status, n in row.counts.items():
            total.counts[status] = total.counts.get(status, 0) + n
    active = dict(
        runs.filter(status__in=ACTIVE_STATUSES).values_list("status").annotate(n=Count("*")).order_by()
    )
    oldest = (
        runs.filter(status=RunStatus.QUEUED)
        .exclude(next_attempt_at__gt=now)  # waiting for its start time (enqueue_at), not stuck
        .only("id", "task_name", "enqueued_at", "status")
        .order_by("enqueued_at")
        .first()
    )
    return DashboardStats(
        window=window,
        since=since,
        now=now,
        tasks=sorted(rows.values(), key=lambda r: (-r.enqueued, -r.finished, r.task_name)),
        statuses=[s for s in RunStatus.values if s in seen_statuses],
        total=total,
        running=active.get(RunStatus.RUNNING, 0),
        queued=active.get(RunStatus.QUEUED, 0),
        retrying=active.get(RunStatus.RETRYING, 0),
        oldest_queued=oldest,
        percentiles_from=source,
    )


def finished_runs(runs: QuerySet[JobRun], since: datetime, now: datetime) -> QuerySet[JobRun]:
    """Runs that executed and finished in ``(since, now]``: what throughput and durations count."""
    return runs.filter(finished_at__gt=since, finished_at__lte=now, status__in=EXECUTED_STATUSES).order_by()


def _placeholders(values: Iterable[Any]) -> str:
    return ", ".join("%s" for _ in values)


FINISHED_STATS_SQL = """
SELECT {task} COLLATE "C", COUNT(*), COUNT(*) FILTER (WHERE {status} IN ({failed})),
       PERCENTILE_CONT(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY date_part('epoch', {finished} - {started}))
FROM {table}
WHERE {finished} > %s AND {finished} <= %s AND {status} IN ({executed})
GROUP BY GROUPING SETS ((1), ())
"""


def postgresql_finished_stats(
    alias: str, since: datetime, now: datetime, rows: dict[str, TaskRow], total: TaskRow
) -> None:
    """Per task and overall, in one scan: finished and failed counts, exact p50/p95 durations.

    Durations are sorted as float seconds (much cheaper than intervals), task names compared
    bytewise, and ``work_mem`` raised for this transaction so a day of runs sorts in memory.
    """
    connection = connections[alias]
    quote = connection.ops.quote_name
    failed, executed = sorted(FAILED_STATUSES), sorted(EXECUTED_STATUSES)
    sql = FINISHED_STATS_SQL.format(
        table=quote(JobRun._meta.db_table),
        task=quote("task_name"),
        status=quote("status"),
        started=quote("started_at"),
        finished=quote("finished_at"),
        failed=_placeholders(failed),
        executed=_placeholders(executed),
    )
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '32MB'")
        cursor.execute(sql, [*failed, since, now, *executed])
        results = cursor.fetchall()
    for task_name, n, failed_n, percentiles in results:
        row = total if task_name is None else rows.setdefault(task_name, TaskRow(task_name))
        row.finished, row.failed = n, failed_n
        row.p50, row.p95 = percentiles if percentiles else (None, None)


def python_finished_stats(finished: QuerySet[JobRun], rows: dict[str, TaskRow], total: TaskRow) -> None:
    """What :func:`postgresql_finished_stats` computes, in Python, for the other databases."""
    durations: dict[str, list[float]] = {}
    everything: list[float] = []
    query = finished.values_list("task_name", "status", "started_at", "finished_at")[:PYTHON_PERCENTILE_ROWS]
    for task_name, status, started_at, finished_at in query.iterator():
        row = rows.setdefault(task_name, TaskRow(task_name))
        row.finished += 1
        total.finished += 1
        if status in FAILED_STATUSES:
            row.failed += 1
            total.failed += 1
        if started_at and finished_at:
            seconds = (finished_at - started_at).total_seconds()
            durations.setdefault(task_name, []).append(seconds)
            everything.append(seconds)
    for task_name, values in durations.items():
        values.sort()
        rows[task_name].p50, rows[task_name].p95 = percentile(values, 0.5), percentile(values, 0.95)
    everything.sort()
    total.p50, total.p95 = percentile(everything, 0.5), percentile(everything, 0.95)


def _rollup_row(task_name: str, cell: Cell) -> TaskRow:
    return TaskRow(
        task_name,
        counts=dict(cell.counts),
        finished=cell.executed,
        failed=cell.failed,
        p50=cell.duration.percentile(0.5),
        p95=cell.duration.percentile(0.95),
    )
