"""Admission (``fusion_jobs.admission``): single-flight tasks and stale cron ticks, inline and on a
real worker; overlaps are skipped and recorded."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone

import fusion_jobs
from fusion_jobs import admission
from fusion_jobs.backends.inline import run_inline
from fusion_jobs.models import CronSchedule, JobRun, RunMode, WorkerLease
from fusion_jobs.registry import get_task
from fusion_jobs.scheduler.firing import Publisher, fire_schedule
from tests.conftest import wait_for
from tests.testapp.models import Marker

SINGLE = "t-cron-single-flight"


@pytest.fixture(autouse=True)
def _fresh_admission_cache() -> Iterator[None]:
    admission.forget_cached_schedules()
    yield
    admission.forget_cached_schedules()


def in_thread(fn: Any, *args: Any, **kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = fn(*args, **kwargs)
        finally:
            connections.close_all()

    thread = threading.Thread(target=target)
    thread.start()
    return thread, out


def finished(run_id: str) -> JobRun | None:
    run = JobRun.objects.get(pk=run_id)
    return run if run.is_terminal else None


@pytest.mark.django_db(transaction=True)
def test_inline_overlap_is_skipped_and_recorded_then_the_lock_is_free_again():
    thread, first = in_thread(fusion_jobs.enqueue, SINGLE, label="one", seconds=1.5)
    wait_for(lambda: Marker.objects.filter(label="one:start").exists(), what="the first run to start")
    second = fusion_jobs.enqueue(SINGLE, label="two")
    assert second.mode == "inline" and second.status == "skipped"
    run = JobRun.objects.get(pk=second.run_id)
    assert run.status == "skipped"
    assert run.skip_reason == "single-flight: another run of 't-cron-single-flight' is still running"
    assert (run.attempts, run.started_at) == (0, None)  # it never went running
    assert not Marker.objects.filter(label__startswith="two").exists()
    thread.join(10)
    assert first["value"].status == "succeeded"
    third = fusion_jobs.enqueue(SINGLE, label="three")
    assert third.status == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_a_key_function_makes_one_flight_per_key():
    thread, first = in_thread(fusion_jobs.enqueue, "t-cron-keyed", account=1, label="a1", seconds=1.5)
    wait_for(lambda: Marker.objects.filter(label="a1:start").exists(), what="account 1 to start")
    other_account = fusion_jobs.enqueue("t-cron-keyed", account=2, label="a2")
    same_account = fusion_jobs.enqueue("t-cron-keyed", account=1, label="a1-again")
    thread.join(10)
    assert (first["value"].status, other_account.status, same_account.status) == (
        "succeeded",
        "succeeded",
        "skipped",
    )
    assert "another run of 't-cron-keyed:account-1'" in JobRun.objects.get(pk=same_account.run_id).skip_reason


@pytest.mark.django_db(transaction=True)
def test_the_lock_is_released_when_the_run_fails():
    failed = fusion_jobs.enqueue(SINGLE, label="boom", seconds="not a number")
    assert failed.status == "failed"
    assert fusion_jobs.enqueue(SINGLE, label="after").status == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_a_cron_run_picked_up_after_max_lateness_is_skipped_inline():
    fusion_jobs.ensure_cron("t-cron-record", "t-cron-late", "* * * * *", {"label": "late"}, max_lateness=30)
    schedule = CronSchedule.objects.get(name="t-cron-late")
    task = get_task("t-cron-record")

    def cron_run(age: float) -> JobRun:
        return JobRun.objects.create(
            task_name="t-cron-record",
            mode=RunMode.INLINE,
            kwargs={"label": f"age-{age:.0f}"},
            cron=schedule,
            scheduled_for=timezone.now() - timedelta(seconds=age),
        )

    stale = cron_run(120)
    outcome = run_inline(task, str(stale.pk), stale.kwargs)
    stale.refresh_from_db()
    assert outcome.status == stale.status == "skipped"
    assert stale.skip_reason.startswith("stale cron tick: starting 120 s after its")
    assert "over the schedule's max_lateness (30 s)" in stale.skip_reason
    fresh = cron_run(5)
    assert run_inline(task, str(fresh.pk), fresh.kwargs).status == "succeeded"
    assert list(Marker.objects.values_list("label", flat=True)) == ["age-5"]


@pytest.mark.django_db
def test_the_lock_row_used_without_postgresql():
    task = get_task(SINGLE)
    release = admission.row_lock("default", "k", holder="run-1", ttl=60)
    assert release is not None
    assert admission.row_lock("default", "k", holder="run-2", ttl=60) is None
    release()
    again = admission.row_lock("default", "k", holder="run-3", ttl=60)
    assert again is not None
    WorkerLease.objects.filter(holder="run-3").update(expires_at=timezone.now() - timedelta(seconds=1))
    taken_over = admission.row_lock("default", "k", holder="run-4", ttl=task.effective_timeout)
    assert taken_over is not None  # an expired lock (a crashed holder) is taken over
    again()  # the old holder's release does not free the new holder's lock
    assert admission.row_lock("default", "k", holder="run-5", ttl=60) is None
    taken_over()


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_on_the_worker_an_overlapping_run_is_skipped_and_never_runs(broker_settings, worker):
    first = fusion_jobs.enqueue(SINGLE, label="w1", seconds=3)
    wait_for(
        lambda: Marker.objects.filter(label="w1:start").exists(), timeout=30, what="the first run to start"
    )
    second = fusion_jobs.enqueue(SINGLE, label="w2", seconds=0)
    runs = [
        wait_for(lambda h=h: finished(h.run_id), timeout=30, what="both runs to end") for h in (first, second)
    ]
    assert [r.status for r in runs] == ["succeeded", "skipped"]
    skipped = runs[1]
    assert skipped.skip_reason == "single-flight: another run of 't-cron-single-flight' is still running"
    assert (skipped.attempts, skipped.started_at, skipped.mode) == (0, None, "worker")
    assert not Marker.objects.filter(label__startswith="w2").exists()
    # Released after the first one's outcome was written: the next run goes through.
    third = fusion_jobs.enqueue(SINGLE, label="w3")
    assert wait_for(lambda: finished(third.run_id), timeout=30).status == "succeeded"


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_on_the_worker_a_stale_tick_of_a_single_flight_task_is_skipped(broker_settings, worker):
    fusion_jobs.ensure_cron(SINGLE, "t-cron-sf", "* * * * *", {"label": "tick"})
    now = timezone.now()
    old_tick = now.replace(second=0, microsecond=0) - timedelta(minutes=5)
    CronSchedule.objects.filter(name="t-cron-sf").update(next_fire_at=old_tick)
    # A scheduler claimed and published the 5-minute-old tick only now (a backlog, a stalled queue).
    [(_tick, run_id)] = fire_schedule("t-cron-sf", clock=lambda: old_tick + timedelta(seconds=1)).fired
    run = wait_for(lambda: finished(run_id), timeout=30, what="the stale run to be skipped")
    assert run.status == "skipped" and run.scheduled_for == old_tick
    assert run.skip_reason.startswith("stale cron tick: starting 3")  # ~300 s late
    assert "over its schedule's interval (a newer tick is due) (60 s)" in run.skip_reason
    assert not Marker.objects.filter(label="tick:start").exists()
    # An on-time tick of the same schedule runs.
    current = now.replace(second=0, microsecond=0)
    CronSchedule.objects.filter(name="t-cron-sf").update(next_fire_at=current)
    [(_, on_time)] = fire_schedule("t-cron-sf", publisher=Publisher()).fired
    assert wait_for(lambda: finished(on_time), timeout=30).status == "succeeded"
