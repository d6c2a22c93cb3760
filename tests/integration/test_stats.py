"""The dashboard over time: SVG charts and tables with the right numbers, from runs and from the rollup.

The rollup (fusion_jobs.rollup) must give exactly what reading the runs gives, whether a bucket is
stored or still read from runs, and stay exact when a writer batch is applied twice.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db.models import Sum
from django.test import Client
from django.urls import reverse
from django.utils import timezone

import fusion_jobs
from fusion_jobs.models import JobRun, RunRollup
from fusion_jobs.recording import StartOp, apply_batch, end_op_failure, end_op_success
from fusion_jobs.rollup import (
    LAG,
    Cell,
    Dist,
    bin_bounds,
    cells_from_rollup,
    cells_from_runs,
    floor_time,
    hist_bin,
    refresh_rollup,
    window_cells,
    window_summary,
)
from fusion_jobs.stats import dashboard_charts

pytestmark = pytest.mark.django_db

DASHBOARD = "admin:fusion_jobs_jobrun_dashboard"
XSS = "<script>alert('x')</script>&<b>"


def ended_run(
    task: str, status: str, finished_at: datetime, duration: float, wait: float, **extra: Any
) -> JobRun:
    started = extra.pop("started_at", finished_at - timedelta(seconds=duration))
    enqueued = (started or finished_at) - timedelta(seconds=wait)
    return JobRun.objects.create(
        task_name=task,
        status=status,
        enqueued_at=enqueued,
        started_at=started,
        finished_at=finished_at,
        attempts=extra.pop("attempts", 1),
        **extra,
    )


@pytest.fixture
def known_runs() -> datetime:
    """Ten minutes ago, in one minute: t-alpha 3 succeeded + 1 failed (2 s each, 0.5 s wait), t-beta 1 timed out."""
    minute = floor_time(timezone.now() - timedelta(minutes=10), 60)
    at = minute + timedelta(seconds=20)
    for _ in range(3):
        ended_run("t-alpha", "succeeded", at, 2.0, 0.5)
    ended_run("t-alpha", "failed", at, 2.0, 0.5)
    ended_run("t-beta", "timed_out", at, 30.0, 4.0)
    ended_run("t-beta", "cancelled", at, 0.0, 0.0, started_at=None)
    return minute


def task_row(html: str, task: str) -> list[str]:
    match = re.search(rf'<tr data-task="{re.escape(task)}"><td>.*?</td>(.*?)</tr>', html, re.S)
    assert match, f"no row for {task}"
    return re.findall(r'<td class="fj-num">(.*?)</td>', match.group(1))


@pytest.mark.parametrize("stored", [False, True], ids=["from-runs", "from-rollup"])
def test_the_charts_and_tables_show_the_numbers_of_known_runs(
    admin_client: Client, known_runs: datetime, stored: bool
) -> None:
    if stored:
        refresh_rollup()
        assert RunRollup.objects.filter(resolution=60).count() == 2
    html = admin_client.get(reverse(DASHBOARD)).content.decode()
    # ended, executed, failed / timed out, failure rate, wait p50, wait p95, duration p50, duration p95
    assert task_row(html, "t-alpha") == ["4", "4", "1", "25.0%", "500 ms", "500 ms", "2.0 s", "2.0 s"]
    assert task_row(html, "t-beta") == ["2", "1", "1", "100.0%", "4.0 s", "4.0 s", "30.0 s", "30.0 s"]
    label = timezone.localtime(known_runs).strftime("%H:%M")
    assert f"<title>{label}: 3 succeeded</title>" in html
    assert f"<title>{label}: 2 failed / timed out</title>" in html
    assert f"<title>{label}: 1 cancelled / skipped</title>" in html
    assert f"<title>{label}: failure rate 40%</title>" in html  # 2 of the 5 that executed
    # Every chart is an accessible image with a title and labelled axes.
    for chart in ("throughput", "failures", "wait", "duration"):
        assert f'<svg class="fj-chart" id="fj-chart-{chart}"' in html
        assert f'aria-labelledby="fj-chart-{chart}-t fj-chart-{chart}-d"' in html
    assert "runs per minute</text>" in html and "failed (% of executed)</text>" in html
    # One task's charts: only its runs.
    html = admin_client.get(reverse(DASHBOARD), {"task": "t-beta"}).content.decode()
    assert f"<title>{label}: 1 failed / timed out</title>" in html
    assert "succeeded</title>" not in html


def test_the_week_and_day_windows_agree_with_the_hour(admin_client: Client, known_runs: datetime) -> None:
    refresh_rollup()
    for window in ("24h", "7d"):
        html = admin_client.get(reverse(DASHBOARD), {"window": window}).content.decode()
        assert 'id="fj-chart-throughput"' in html
        assert task_row(html, "t-alpha")[:4] == ["4", "4", "1", "25.0%"]
    html = admin_client.get(reverse(DASHBOARD), {"window": "7d"}).content.decode()
    assert "rollup histograms" in html  # the week's per-task table is from the rollup too


def test_hostile_task_names_are_text_in_the_svg_and_tables(admin_client: Client) -> None:
    ended_run(XSS, "failed", timezone.now() - timedelta(minutes=2), 1.0, 0.1)
    for params in ({}, {"task": XSS}):
        html = admin_client.get(reverse(DASHBOARD), params).content.decode()
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;&lt;b&gt;" in html
    assert "task &lt;script&gt;" in html  # the chart titles name the chosen task, escaped


@pytest.mark.parametrize("window", ["1h", "24h", "7d"])
def test_a_task_filter_with_a_nul_shows_no_runs_not_a_server_error(admin_client: Client, window: str) -> None:
    """PostgreSQL refuses NUL in a query parameter; no task name holds one, so the filter matches nothing."""
    ended_run("t-alpha", "succeeded", timezone.now() - timedelta(minutes=2), 1.0, 0.1)
    response = admin_client.get(reverse(DASHBOARD), {"task": "t-al\x00pha", "window": window})
    assert response.status_code == 200
    assert response.context["charts"].total.ended == 0


def rollup_rows() -> list[tuple[Any, ...]]:
    return list(
        RunRollup.objects.order_by("resolution", "bucket", "task_name").values_list(
            "resolution",
            "bucket",
            "task_name",
            "succeeded",
            "failed",
            "timed_out",
            "cancelled",
            "skipped",
            "duration_sum",
            "duration_hist",
            "wait_count",
            "wait_hist",
        )
    )


def test_the_rollup_is_exact_and_idempotent_under_writer_retries() -> None:
    """Ends applied through the writer's batch, twice (a retried batch): the rollup counts each run once."""
    runs = [JobRun.objects.create(task_name="t-record", kwargs={"i": i}) for i in range(5)]
    starts = [StartOp(str(r.pk), "t-record") for r in runs]
    apply_batch(starts)
    attempts = [op.outcome for op in starts]
    ends = [end_op_success(a, i) for i, a in enumerate(attempts[:4])]
    ends.append(end_op_failure(attempts[4], ValueError("boom")))
    apply_batch(ends)
    later = timezone.now() + timedelta(minutes=2)  # the refresh stores whole minutes only
    refresh_rollup(now=later)
    first = rollup_rows()
    apply_batch(
        [end_op_success(a, i) for i, a in enumerate(attempts[:4])]
        + [end_op_failure(attempts[4], ValueError("boom"))]
    )
    refresh_rollup(now=later)
    refresh_rollup(now=later)
    assert rollup_rows() == first
    minute = [row for row in first if row[0] == 60]
    assert sum(row[3] for row in minute) == 4 and sum(row[4] for row in minute) == 1
    # The 15-minute and hourly buckets are the sums of their minutes.
    for resolution in (900, 3600):
        coarse = [row for row in first if row[0] == resolution]
        assert sum(row[3] for row in coarse) == 4 and sum(row[4] for row in coarse) == 1
        assert sum(sum(row[9].values()) for row in coarse) == 5


def test_a_late_written_end_is_taken_in_and_runs_after_the_watermark_are_read_directly() -> None:
    now = timezone.now()
    refresh_rollup(now=now)
    # Written after that refresh, ended 5 minutes before it (a writer that lagged): within LAG.
    ended_run("t-late", "succeeded", now - timedelta(minutes=5), 1.0, 0.2)
    # Ended after the watermark: on the dashboard before any refresh.
    ended_run("t-new", "succeeded", now + timedelta(seconds=1), 1.0, 0.2)
    charts = dashboard_charts("1h", now=now + timedelta(seconds=2))
    assert {t.task_name: t.cell.ended for t in charts.tasks} == {"t-new": 1}  # t-late not yet stored
    refresh_rollup(now=now + timedelta(minutes=1))
    assert timedelta(minutes=5) < LAG
    charts = dashboard_charts("1h", now=now + timedelta(minutes=1, seconds=1))
    assert {t.task_name: t.cell.ended for t in charts.tasks} == {"t-late": 1, "t-new": 1}
    # The same numbers as reading every run.
    since = charts.since
    direct = cells_from_runs(since, now + timedelta(minutes=2), 60)
    assert sum(c.ended for c in direct.values()) == 2


def test_the_rollup_keeps_the_run_retention(settings: Any) -> None:
    settings.FUSION_JOBS_RUN_RETENTION_DAYS = 2
    now = timezone.now()
    ended_run("t-kept", "succeeded", now - timedelta(days=1), 1.0, 0.1)
    ended_run("t-too-old", "succeeded", now - timedelta(days=3), 1.0, 0.1)
    refresh_rollup(now=now)  # the first refresh backfills from the retention cutoff
    assert set(RunRollup.objects.values_list("task_name", flat=True)) == {"t-kept"}
    refresh_rollup(now=now + timedelta(days=2))
    assert RunRollup.objects.count() == 0  # pruned with the runs' retention


def test_histogram_percentiles_stay_within_a_bin_and_inside_min_max() -> None:
    values = [0.0005, 0.01, 0.2, 0.2, 0.3, 1.5, 7.0, 60.0, 3600.0]
    dist = Dist()
    for v in values:
        dist.add(v)
    assert dist.percentile(0.0) == 0.0005 and dist.percentile(1.0) == 3600.0
    median = dist.percentile(0.5)
    assert median is not None
    low, high = bin_bounds(hist_bin(0.3))
    assert low <= median <= high
    assert hist_bin(10**9) == hist_bin(10**10)  # the last bin is open


def test_stored_coarse_buckets_merge_like_minutes(known_runs: datetime) -> None:
    refresh_rollup()
    hour = floor_time(known_runs, 3600)
    stored = cells_from_rollup(3600, hour, hour + timedelta(hours=1), 3600)
    direct = cells_from_runs(hour, hour + timedelta(hours=1), 3600)
    assert {k: (c.counts, c.duration.hist, c.wait.hist) for k, c in stored.items()} == {
        k: (c.counts, c.duration.hist, c.wait.hist) for k, c in direct.items()
    }


def test_the_database_sums_like_python(known_runs: datetime) -> None:
    """PostgreSQL sums the stored buckets in SQL; other databases merge them in Python: same numbers."""
    refresh_rollup()
    ended_run("t-alpha", "succeeded", timezone.now(), 5.0, 1.0)  # after the watermark: read from runs
    now = timezone.now() + timedelta(seconds=1)
    since = floor_time(now - timedelta(days=1), 900)
    summary = window_summary(since, now, 900)
    assert summary.mark is not None
    cells, _ = window_cells(since, now, 900)
    by_task: dict[str, Cell] = {}
    for (_bucket, task), cell in cells.items():
        by_task.setdefault(task, Cell()).merge(cell)

    def shape(c: Cell) -> tuple[Any, ...]:
        return (c.counts, c.duration.count, c.duration.hist, c.duration.low, c.wait.count, c.wait.hist)

    assert {t: shape(c) for t, c in summary.by_task.items()} == {t: shape(c) for t, c in by_task.items()}
    assert summary.by_task["t-alpha"].counts == {"succeeded": 4, "failed": 1}


@pytest.mark.django_db(transaction=True)
def test_the_rollup_task_refreshes_the_rollup(known_runs: datetime) -> None:
    """``fusion-jobs-rollup``, the task ``runcrons`` schedules every five minutes, runs the refresh."""
    handle = fusion_jobs.enqueue("fusion-jobs-rollup")
    assert handle.status == "succeeded", handle.error
    assert handle.result["minute_buckets"] == 2  # t-alpha and t-beta, ten minutes ago
    assert RunRollup.objects.filter(resolution=3600).aggregate(n=Sum("succeeded"))["n"] == 3
