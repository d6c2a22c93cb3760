"""The jobs dashboard: cards, charts over time and per-task tables for the last hour, day or week.

The numbers come from :mod:`fusion_jobs.stats` (every query behind the dashboard); this module
only turns them into the page: SVG figures (:mod:`fusion_jobs.charts`), table rows, the view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.safestring import SafeString

from ..api import get_jobs_status
from ..charts import Series, lines, stacked_bars
from ..models import JobsDashboard, RunStatus
from ..stats import (
    CHART_WINDOWS,
    ROLLUP_TABLE_WINDOWS,
    DashboardCharts,
    DashboardStats,
    TaskRow,
    dashboard_charts,
    dashboard_stats,
    format_duration,
    format_percent,
)
from ..utils import clean_text
from ..workers import unconsumed_warnings
from .changelist import ReadOnlyAdmin
from .display import badge

DEFAULT_WINDOW = "1h"
GREEN, RED, GREY, BLUE, ORANGE = "#198754", "#c82333", "#8a96a3", "#0d6efd", "#b35c00"


@dataclass
class StatsTable:
    """The "Runs per task" table: one column per status seen, then totals, rate and percentiles."""

    stats: DashboardStats

    def status_headers(self) -> list[SafeString]:
        return [badge(status) for status in self.stats.statuses]

    def rows(self) -> list[dict[str, Any]]:
        return [self._row(row) for row in self.stats.tasks]

    def total(self) -> dict[str, Any]:
        return self._row(self.stats.total)

    def _row(self, row: TaskRow) -> dict[str, Any]:
        return {
            "task_name": row.task_name,
            "cells": row.cells(self.stats.statuses),
            "enqueued": row.enqueued,
            "finished": row.finished,
            "failed": row.failed,
            "failure_rate": format_percent(row.failure_rate),
            "p50": format_duration(row.p50, precise=True),
            "p95": format_duration(row.p95, precise=True),
        }


@dataclass
class Figures:
    """The four charts over time: throughput, failure rate, queue wait and duration."""

    charts: DashboardCharts

    @property
    def _heading(self) -> str:
        c = self.charts
        return f"per {c.bucket_label}, {c.label.lower()}, {c.scope}"

    @property
    def _x_label(self) -> str:
        return f"Time ({timezone.get_current_timezone_name()}), one bar per {self.charts.bucket_label}"

    def throughput(self) -> SafeString:
        cells = [p.cell for p in self.charts.points]
        return stacked_bars(
            "fj-chart-throughput",
            f"Runs ended {self._heading}",
            "Stacked bars: succeeded, failed or timed out, cancelled or skipped.",
            self.charts.labels,
            [
                Series("succeeded", GREEN, [c.counts.get(RunStatus.SUCCEEDED, 0) for c in cells]),
                Series("failed / timed out", RED, [c.failed for c in cells]),
                Series("cancelled / skipped", GREY, [c.ended - c.executed for c in cells]),
            ],
            y_label=f"runs per {self.charts.bucket_label}",
            x_label=self._x_label,
        )

    def failures(self) -> SafeString:
        rates = [p.cell.failure_rate for p in self.charts.points]
        return lines(
            "fj-chart-failures",
            f"Failure rate {self._heading}",
            "Failed or timed out runs as a share of the runs that executed; gaps where none ended.",
            self.charts.labels,
            [Series("failure rate", RED, [None if r is None else r * 100 for r in rates])],
            y_label="failed (% of executed)",
            x_label=self._x_label,
            fmt=lambda v: f"{v:.1f}%" if v % 1 else f"{v:.0f}%",
        )

    def wait(self) -> SafeString:
        return self._percentiles("fj-chart-wait", "Queue wait", "wait", "enqueue (or cron tick) to start")

    def duration(self) -> SafeString:
        return self._percentiles("fj-chart-duration", "Duration", "duration", "start to end")

    def _percentiles(self, chart_id: str, name: str, attr: str, what: str) -> SafeString:
        dists = [getattr(p.cell, attr) for p in self.charts.points]
        p95 = [d.percentile(0.95) for d in dists]
        unit, scale = _unit([v for v in p95 if v is not None])
        return lines(
            chart_id,
            f"{name} p50 and p95 {self._heading}",
            f"{name} ({what}) of the runs that ended in each bucket; gaps where none did.",
            self.charts.labels,
            [
                Series("p50", BLUE, [_scaled(d.percentile(0.5), scale) for d in dists]),
                Series("p95", ORANGE, [_scaled(v, scale) for v in p95], dashed=True),
            ],
            y_label=f"{name.lower()} ({unit})",
            x_label=self._x_label,
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


def dashboard_view(model_admin: admin.ModelAdmin, request: HttpRequest) -> TemplateResponse:
    """The dashboard page, for whoever may view runs (served under the run admin's URLs)."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    key = request.GET.get("window", DEFAULT_WINDOW)
    if key not in CHART_WINDOWS:
        key = DEFAULT_WINDOW
    label, window = CHART_WINDOWS[key][:2]
    # No task name holds a NUL (which PostgreSQL refuses in a query): such a filter matches nothing.
    task_filter = clean_text(request.GET.get("task", "")) or None
    charts = dashboard_charts(key, task_name=task_filter)
    # A week of runs is too many to count and sort per request: its table comes from the rollup.
    stats = dashboard_stats(window, now=charts.now, summary=charts if key in ROLLUP_TABLE_WINDOWS else None)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Jobs dashboard",
        "opts": model_admin.opts,
        "stats": stats,
        "table": StatsTable(stats),
        "charts": charts,
        "figures": Figures(charts),
        "task_filter": task_filter,
        "window_key": key,
        "window_label": label,
        "windows": [(k, v[0]) for k, v in CHART_WINDOWS.items()],
        "jobs": get_jobs_status(),
        "worker_warnings": unconsumed_warnings(),
        "workers_url": reverse("admin:fusion_jobs_workerheartbeat_changelist"),
        "changelist_url": reverse("admin:fusion_jobs_jobrun_changelist"),
        "media": model_admin.media,
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/fusion_jobs/dashboard.html", context)


@admin.register(JobsDashboard)
class JobsDashboardAdmin(ReadOnlyAdmin):
    """Lists "Jobs dashboard" in the admin index for whoever may view runs; its page is the dashboard."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("fusion_jobs.view_jobrun") or request.user.has_perm(
            "fusion_jobs.change_jobrun"
        )

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def get_urls(self) -> list[Any]:
        return [
            path(
                "",
                self.admin_site.admin_view(self.redirect_to_dashboard),
                name="fusion_jobs_jobsdashboard_changelist",
            )
        ]

    def redirect_to_dashboard(self, request: HttpRequest) -> HttpResponseRedirect:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return HttpResponseRedirect(reverse("admin:fusion_jobs_jobrun_dashboard"))
