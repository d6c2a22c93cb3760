"""Pruning finished runs: what goes, what stays, batches, the command and the built-in tasks."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import fusion_jobs
from fusion_jobs.models import CronSchedule, JobRun
from fusion_jobs.registry import all_tasks
from fusion_jobs.retention import prune_runs, retention_cutoff

pytestmark = pytest.mark.django_db


def run_aged(days: float, status: str = "succeeded", **fields: Any) -> JobRun:
    at = timezone.now() - timedelta(days=days)
    defaults: dict[str, Any] = {
        "task_name": "t-record",
        "status": status,
        "enqueued_at": at - timedelta(seconds=5),
        "finished_at": at if status in ("succeeded", "failed", "timed_out", "cancelled", "skipped") else None,
    }
    return JobRun.objects.create(**{**defaults, **fields})


def test_prunes_only_finished_runs_older_than_the_cutoff():
    old = [run_aged(20, status) for status in ("succeeded", "failed", "timed_out", "cancelled", "skipped")]
    never_finished = run_aged(20, "failed", finished_at=None)  # a terminal row without finished_at
    recent = run_aged(3, "failed")
    old_but_active = [run_aged(20, status) for status in ("queued", "running", "retrying")]
    result = prune_runs(days=14)
    assert (result.deleted, result.dry_run) == (6, False)
    left = set(JobRun.objects.values_list("pk", flat=True))
    assert left == {recent.pk, *(r.pk for r in old_but_active)}
    assert not JobRun.objects.filter(pk__in=[*(r.pk for r in old), never_finished.pk]).exists()


def test_batches_of_primary_keys_with_progress_and_no_big_columns():
    for day in range(10):
        run_aged(30 + day, traceback="Traceback ... " * 100, kwargs={"blob": "x" * 500})
    lines: list[str] = []
    with CaptureQueriesContext(connection) as queries:
        result = prune_runs(days=14, batch_size=3, progress=lines.append)
    assert (result.deleted, result.batches) == (10, 4)
    assert lines[:4] == [
        "batch 1: deleted 3 run(s), 3 so far",
        "batch 2: deleted 3 run(s), 6 so far",
        "batch 3: deleted 3 run(s), 9 so far",
        "batch 4: deleted 1 run(s), 10 so far",
    ]
    assert lines[-1].startswith("deleted 10 finished run(s) older than")
    deletes = [q["sql"] for q in queries if q["sql"].startswith('DELETE FROM "fusion_jobs_jobrun"')]
    assert len(deletes) == 4
    assert [sql.count("::uuid") for sql in deletes] == [3, 3, 3, 1]  # one short DELETE per batch of ids
    selects = [q["sql"] for q in queries if q["sql"].startswith("SELECT")]
    assert not any('"traceback"' in sql or '"kwargs"' in sql for sql in selects)
    assert JobRun.objects.count() == 0


def test_dry_run_counts_and_deletes_nothing():
    for _ in range(4):
        run_aged(30)
    run_aged(1)
    lines: list[str] = []
    result = prune_runs(days=14, dry_run=True, progress=lines.append)
    assert (result.matched, result.deleted, result.dry_run) == (4, 0, True)
    assert lines == [f"dry run: 4 finished run(s) older than {result.cutoff.isoformat()} would be deleted"]
    assert JobRun.objects.count() == 5


def test_links_to_pruned_runs_are_cleared_not_cascaded():
    original = run_aged(30, "failed")
    retry = run_aged(1, "succeeded", retry_of=original)
    cron = CronSchedule.objects.create(name="hourly", task_name="t-record", expression="0 * * * *")
    cron.last_run = original
    cron.save()
    assert prune_runs(days=14).deleted == 1
    retry.refresh_from_db()
    cron.refresh_from_db()
    assert retry.retry_of_id is None and cron.last_run_id is None


def test_default_retention_comes_from_the_setting(settings):
    settings.FUSION_JOBS_RUN_RETENTION_DAYS = 3
    run_aged(5)
    kept = run_aged(2)
    assert prune_runs().deleted == 1
    assert list(JobRun.objects.values_list("pk", flat=True)) == [kept.pk]
    assert retention_cutoff(None) < timezone.now() - timedelta(days=3) + timedelta(seconds=5)
    with pytest.raises(ValueError, match="days must be >= 0"):
        retention_cutoff(-1)
    with pytest.raises(ValueError, match="batch size"):
        prune_runs(batch_size=0)


def test_prunejobruns_command():
    for _ in range(3):
        run_aged(10)
    run_aged(2)
    out = io.StringIO()
    call_command("prunejobruns", "--days", "7", "--dry-run", stdout=out)
    assert "prunejobruns: runs finished more than 7 day(s) ago, batches of 1000 (dry run)" in out.getvalue()
    assert "dry run: 3 finished run(s)" in out.getvalue()
    assert JobRun.objects.count() == 4
    out = io.StringIO()
    call_command("prunejobruns", "--days", "7", "--batch-size", "2", stdout=out)
    text = out.getvalue()
    assert "batch 1: deleted 2 run(s), 2 so far" in text and "batch 2: deleted 1 run(s), 3 so far" in text
    assert "prunejobruns: done in" in text
    assert JobRun.objects.count() == 1
    for bad in (["--days", "-1"], ["--batch-size", "0"]):
        with pytest.raises(CommandError):
            call_command("prunejobruns", *bad, stdout=io.StringIO())


def test_prunejobruns_uses_the_retention_setting(settings):
    settings.FUSION_JOBS_RUN_RETENTION_DAYS = 30
    run_aged(20)
    out = io.StringIO()
    call_command("prunejobruns", stdout=out)
    assert "more than 30 day(s) ago" in out.getvalue()
    assert JobRun.objects.count() == 1


def test_builtin_tasks_are_autodiscovered():
    tasks = all_tasks()
    assert {"fusion-jobs-prune-runs", "fusion-jobs-sweep-stuck"} <= set(tasks)
    assert tasks["fusion-jobs-prune-runs"].fn.__module__ == "fusion_jobs.tasks"
    assert tasks["fusion-jobs-prune-runs"].effective_timeout <= 600  # within the consumer-timeout check


@pytest.mark.django_db(transaction=True)
def test_prune_task_runs_the_pruner():
    for _ in range(2):
        run_aged(40)
    handle = fusion_jobs.enqueue("fusion-jobs-prune-runs", days=14, batch_size=1)
    assert handle.status == "succeeded"
    assert (handle.result["deleted"], handle.result["batches"], handle.result["dry_run"]) == (2, 2, False)
    remaining = list(JobRun.objects.all())
    assert [run.task_name for run in remaining] == ["fusion-jobs-prune-runs"]  # its own run, just finished
