"""enqueue() without a broker: the inline backend, with the same validation and recording."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import transaction

import fusion_jobs
from fusion_jobs.exceptions import PayloadError, TaskArgumentsError, UnknownTaskError
from fusion_jobs.models import JobRun
from tests.testapp.models import Marker

pytestmark = pytest.mark.django_db(transaction=True)


def test_inline_success_is_recorded_like_a_worker_run():
    handle = fusion_jobs.enqueue("t-record", label="a", value=[1, 2])
    assert handle.mode == "inline"
    assert handle.status == "succeeded"
    assert handle.result["label"] == "a"
    run = JobRun.objects.get(pk=handle.run_id)
    assert (run.status, run.mode, run.attempts) == ("succeeded", "inline", 1)
    assert run.kwargs == {"label": "a", "value": [1, 2]}
    assert run.started_at and run.finished_at and run.enqueued_at <= run.started_at <= run.finished_at
    assert run.enqueued_by.endswith("test_api:test_inline_success_is_recorded_like_a_worker_run")
    assert Marker.objects.filter(label="a").count() == 1


def test_task_object_and_method_enqueue():
    from tests.testapp.tasks import record

    assert fusion_jobs.enqueue(record, label="obj").status == "succeeded"
    assert record.enqueue(label="method").status == "succeeded"
    assert Marker.objects.filter(label__in=["obj", "method"]).count() == 2


def test_inline_failure_does_not_reach_the_caller(caplog):
    with caplog.at_level(logging.ERROR, logger="fusion_jobs.inline"):
        handle = fusion_jobs.enqueue("t-always-fail", label="boom")
    assert handle.status == "failed"
    assert handle.failed
    assert handle.error.startswith("ValueError: always fails")
    run = JobRun.objects.get(pk=handle.run_id)
    assert run.status == "failed" and "Traceback" in run.traceback and "ValueError" in run.traceback
    assert "t-always-fail failed" in caplog.text


def test_inline_raise_setting(settings):
    settings.FUSION_JOBS_INLINE_RAISE = True
    with pytest.raises(ValueError, match="always fails"):
        fusion_jobs.enqueue("t-always-fail", label="raise")
    assert JobRun.objects.get(task_name="t-always-fail").status == "failed"


def test_unknown_task_writes_nothing():
    with pytest.raises(UnknownTaskError, match="t-record"):
        fusion_jobs.enqueue("t-recor", label="x")
    assert JobRun.objects.count() == 0


def test_bad_payload_writes_and_runs_nothing():
    import datetime

    with pytest.raises(
        PayloadError, match=r"t-record: kwargs\['value'\] is not JSON-serialisable \(datetime"
    ):
        fusion_jobs.enqueue("t-record", label="x", value=datetime.datetime(2026, 1, 1))
    assert JobRun.objects.count() == 0
    assert Marker.objects.count() == 0


def test_payload_size_limit(settings):
    settings.FUSION_JOBS_MAX_PAYLOAD_BYTES = 1024
    with pytest.raises(PayloadError, match=r"over the 1,024-byte limit"):
        fusion_jobs.enqueue("t-record", label="x" * 2000)
    assert JobRun.objects.count() == 0


def test_inline_sees_the_json_roundtrip():
    handle = fusion_jobs.enqueue("t-echo", pair=(1, 2), nested={"k": (3,)})
    assert handle.result["kwargs"] == {"pair": [1, 2], "nested": {"k": [3]}}
    assert handle.result["types"]["pair"] == "list"


def test_wrong_arguments_are_refused_at_the_call():
    # More cases (queued, enqueue_many, ensure_cron) in test_enqueue_validation.py.
    with pytest.raises(TaskArgumentsError, match=r"unexpected argument 'lable' \(did you mean 'label'\?\)"):
        fusion_jobs.enqueue("t-record", lable="typo")
    assert JobRun.objects.count() == 0


def test_inline_waits_for_commit_and_rollback_runs_nothing():
    with transaction.atomic():
        handle = fusion_jobs.enqueue("t-record", label="in-tx")
        assert handle.status == "queued"
        assert Marker.objects.filter(label="in-tx").count() == 0  # not yet: waits for commit
    assert handle.status == "succeeded"
    assert Marker.objects.filter(label="in-tx").count() == 1

    with pytest.raises(RuntimeError), transaction.atomic():
        fusion_jobs.enqueue("t-record", label="rolled-back")
        raise RuntimeError("roll back")
    assert not Marker.objects.filter(label="rolled-back").exists()
    assert not JobRun.objects.filter(kwargs__label="rolled-back").exists()


def test_progress_is_recorded_inline(settings):
    settings.FUSION_JOBS_PROGRESS_INTERVAL = 0
    handle = fusion_jobs.enqueue("t-progress", steps=5)
    run = JobRun.objects.get(pk=handle.run_id)
    assert (run.progress_stage, run.progress_done, run.progress_total) == ("stepping", 5, 5)
    assert run.progress_percent == 100.0


def test_report_progress_outside_a_task_is_a_no_op():
    fusion_jobs.report_progress("nothing", 1, 2)  # must not raise or write
    assert JobRun.objects.count() == 0


def test_enqueue_many_inline_validates_everything_first():
    with pytest.raises(PayloadError, match=r"t-record \(item 1\): kwargs\['value'\]"):
        fusion_jobs.enqueue_many("t-record", [{"label": "ok"}, {"label": "bad", "value": {1, 2}}])
    assert JobRun.objects.count() == 0 and Marker.objects.count() == 0
    handles = fusion_jobs.enqueue_many("t-record", [{"label": "m1"}, {"label": "m2"}])
    assert [h.status for h in handles] == ["succeeded", "succeeded"]
    assert Marker.objects.filter(label__in=["m1", "m2"]).count() == 2


@pytest.mark.broker
@pytest.mark.parametrize(
    "when",
    [
        # 9999-12-31 23:00 at UTC-5 is year 10000 in UTC: PostgreSQL stores it, psycopg can't read it back
        datetime(9999, 12, 31, 23, 0, tzinfo=timezone(-timedelta(hours=5))),
        timedelta(days=999_999_999),
        -timedelta(days=999_999_999),
    ],
    ids=["year-10000-in-utc", "huge-timedelta", "huge-negative-timedelta"],
)
def test_enqueue_at_refuses_a_start_outside_the_datetime_range(broker_settings, when):
    """A start no datetime can hold is refused at the call; before, the row was written and every
    later read of it (admin, get_result) raised DataError, or the caller got a raw OverflowError."""
    with pytest.raises(PayloadError, match="enqueue_at: when"):
        fusion_jobs.enqueue_at(when, "t-record", label="out-of-range")
    assert not JobRun.objects.filter(kwargs__label="out-of-range").exists()
    list(JobRun.objects.all())  # every row still reads back


@pytest.mark.broker
def test_enqueue_at_still_takes_the_last_representable_start(broker_settings):
    handle = fusion_jobs.enqueue_at(datetime.max.replace(tzinfo=UTC), "t-record", label="last")
    assert JobRun.objects.get(pk=handle.run_id).next_attempt_at == datetime.max.replace(tzinfo=UTC)
