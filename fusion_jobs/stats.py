"""The dashboard over time: throughput, failure rate, p50/p95 queue wait and duration per bucket and per task.

Read from :mod:`fusion_jobs.rollup` (stored buckets up to its watermark, runs after it), so a week
on a table of millions of runs costs a few thousand small rows. Percentiles come from the log-bin
histograms: within one bin (about 9%) of exact, and never outside the exact min and max.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from django.utils.safestring import SafeString

from .charts import Series, lines, stacked_bars
from .rollup import Cell, floor_time, window_summary

#: key: (label, window, bucket seconds, label format)
CHART_WINDOWS: dict[str, tuple[str, timedelta, int, str]] = {
    "1h": ("Last hour", timedelta(hours=1), 60, "%H:%M"),
    "24h": ("Last day", timedelta(days=1), 900, "%H:%M"),
    "7d": ("Last week", timedelta(days=7), 3600, "%a %H:00"),
}
GREEN, RED, GREY, BLUE, ORANGE = "#198754", "#c82333", "#8a96a3", "#0d6efd", "#b35c00"


def format_duration(seconds: float | None) -> str:
    """Seconds as a short human figure: 850 ms, 2.4 s, 3.5 min, 1.2 h."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


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
            "succeeded": c.counts.get("succeeded", 0),
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

    @property
    def x_label(self) -> str:
        return f"Time ({timezone.get_current_timezone_name()}), one bar per {self.bucket_label}"

    def throughput_chart(self) -> SafeString:
        cells = [p.cell for p in self.points]
        return stacked_bars(
            "fj-chart-throughput",
            f"Runs ended per {self.bucket_label}, {self.label.lower()}, {self.scope}",
            "Stacked bars: succeeded, failed or timed out, cancelled or skipped.",
            self.labels,
            [
                Series("succeeded", GREEN, [c.counts.get("succeeded", 0) for c in cells]),
                Series("failed / timed out", RED, [c.failed for c in cells]),
                Series("cancelled / skipped", GREY, [c.ended - c.executed for c in cells]),
            ],
            y_label=f"runs per {self.bucket_label}",
            x_label=self.x_label,
        )

    def failure_chart(self) -> SafeString:
        rates = [p.cell.failure_rate for p in self.points]
        return lines(
            "fj-chart-failures",
            f"Failure rate per {self.bucket_label}, {self.label.lower()}, {self.scope}",
            "Failed or timed out runs as a share of the runs that executed; gaps where none ended.",
            self.labels,
            [Series("failure rate", RED, [None if r is None else r * 100 for r in rates])],
            y_label="failed (% of executed)",
            x_label=self.x_label,
            fmt=lambda v: f"{v:.1f}%" if v % 1 else f"{v:.0f}%",
        )

    def wait_chart(self) -> SafeString:
        return self._percentile_chart(
            "fj-chart-wait", "Queue wait", "wait", "enqueue (or cron tick) to start"
        )

    def duration_chart(self) -> SafeString:
        return self._percentile_chart("fj-chart-duration", "Duration", "duration", "start to end")

    def _percentile_chart(self, chart_id: str, name: str, attr: str, what: str) -> SafeString:
        dists = [getattr(p.cell, attr) for p in self.points]
        p95 = [d.percentile(0.95) for d in dists]
        unit, scale = _unit([v for v in p95 if v is not None])
        return lines(
            chart_id,
            f"{name} p50 and p95 per {self.bucket_label}, {self.label.lower()}, {self.scope}",
            f"{name} ({what}) of the runs that ended in each bucket; gaps where none did.",
            self.labels,
            [
                Series("p50", BLUE, [_scaled(d.percentile(0.5), scale) for d in dists]),
                Series("p95", ORANGE, [_scaled(v, scale) for v in p95], dashed=True),
            ],
            y_label=f"{name.lower()} ({unit})",
            x_label=self.x_label,
            fmt=lambda v: f"{v:g}",
        )


def _unit(values: list[float]) -> tuple[str, float]:
    high = max(values, default=0.0)
    if high < 1:
        return "ms", 1000.0
    if high < 120:
        return "s", 1.0
    if high < 7200:
        return "min", 1 / 60
    return "h", 1 / 3600


def _scaled(value: float | None, scale: float) -> float | None:
    return None if value is None else round(value * scale, 3)


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
