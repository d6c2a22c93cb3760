"""On-commit hooks are independent: one enqueue's failure never skips another's publish or run.

Django drops a transaction's remaining on-commit hooks when one raises. So inside a transaction
the publish or inline run of each enqueue must not raise: every run ends in a true state (run,
published, or marked failed) and the caller's own hooks still run. Outside a transaction the
caller still gets the exception (``ON_PUBLISH_ERROR=raise``, ``INLINE_RAISE``).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.db import transaction

import fusion_jobs
from fusion_jobs.backends.broker import reset_broker
from fusion_jobs.exceptions import PublishError
from fusion_jobs.models import JobRun
from tests.conftest import BROKER_URL, wait_for
from tests.testapp.models import Marker

pytestmark = pytest.mark.django_db(transaction=True)

DOWN_URL = "amqp://guest:guest@127.0.0.1:1/"  # nothing listens on port 1: publishing fails


@pytest.fixture
def broker_down(settings: Any) -> Any:
    settings.FUSION_JOBS_BROKER_URL = DOWN_URL
    reset_broker()
    yield settings
    reset_broker()


def statuses(handles: list[Any]) -> list[str]:
    return [JobRun.objects.get(pk=h.run_id).status for h in handles]


def test_publish_error_raise_in_a_transaction_skips_no_hook(broker_down: Any, caplog: Any) -> None:
    broker_down.FUSION_JOBS_ON_PUBLISH_ERROR = "raise"
    mine: list[str] = []
    with caplog.at_level(logging.ERROR, logger="fusion_jobs"), transaction.atomic():
        first = fusion_jobs.enqueue("t-record", label="a")
        second = fusion_jobs.enqueue("t-record", label="b")
        transaction.on_commit(lambda: mine.append("ran"))
    assert mine == ["ran"]
    assert statuses([first, second]) == ["failed", "failed"]
    for handle in (first, second):
        assert handle.status == "failed" and handle.error.startswith("PublishError:")
        assert JobRun.objects.get(pk=handle.run_id).error.startswith("PublishError:")
    assert "after the transaction committed" in caplog.text


def test_publish_error_raise_outside_a_transaction_still_raises(broker_down: Any) -> None:
    broker_down.FUSION_JOBS_ON_PUBLISH_ERROR = "raise"
    with pytest.raises(PublishError):
        fusion_jobs.enqueue("t-record", label="direct")
    assert JobRun.objects.get().status == "failed"


def test_inline_raise_in_a_transaction_skips_no_hook(settings: Any) -> None:
    settings.FUSION_JOBS_INLINE_RAISE = True
    mine: list[str] = []
    with transaction.atomic():
        failing = fusion_jobs.enqueue("t-always-fail", label="f")
        after = fusion_jobs.enqueue("t-record", label="after-the-failure")
        transaction.on_commit(lambda: mine.append("ran"))
    assert mine == ["ran"]
    assert statuses([failing, after]) == ["failed", "succeeded"]
    assert (failing.status, after.status) == ("failed", "succeeded")
    assert failing.error.startswith("ValueError: always fails")
    assert Marker.objects.filter(label="after-the-failure").count() == 1


def test_inline_fallback_failing_in_a_transaction_skips_no_hook(broker_down: Any) -> None:
    broker_down.FUSION_JOBS_ON_PUBLISH_ERROR = "inline"
    broker_down.FUSION_JOBS_INLINE_RAISE = True
    with transaction.atomic():
        failing = fusion_jobs.enqueue("t-always-fail", label="fb")
        after = fusion_jobs.enqueue("t-record", label="fb-after")
    assert statuses([failing, after]) == ["failed", "succeeded"]


BATCH = [
    {"label": "m1", "failures": 1},
    {"label": "m2", "failures": 0},
    {"label": "m3", "failures": 1},
]


def test_enqueue_many_inline_raise_runs_the_whole_batch_then_raises(settings: Any) -> None:
    settings.FUSION_JOBS_INLINE_RAISE = True
    with pytest.raises(RuntimeError, match="planned failure 1 of 1"):
        fusion_jobs.enqueue_many("t-fail-then-pass", BATCH)
    runs = JobRun.objects.order_by("kwargs__label")
    assert [run.status for run in runs] == ["failed", "succeeded", "failed"]


def test_enqueue_many_inline_raise_in_a_transaction_skips_no_hook(settings: Any) -> None:
    settings.FUSION_JOBS_INLINE_RAISE = True
    mine: list[str] = []
    with transaction.atomic():
        handles = fusion_jobs.enqueue_many("t-fail-then-pass", BATCH)
        transaction.on_commit(lambda: mine.append("ran"))
    assert mine == ["ran"]
    assert statuses(handles) == ["failed", "succeeded", "failed"]
    assert [h.status for h in handles] == ["failed", "succeeded", "failed"]


@pytest.mark.broker
def test_a_failing_inline_hook_does_not_stop_a_publish_to_the_real_broker(
    broker_settings: str, settings: Any, worker: Any
) -> None:
    """One transaction: an inline run that raises (EAGER + INLINE_RAISE), then a queued run."""
    settings.FUSION_JOBS_INLINE_RAISE = True
    with transaction.atomic():
        settings.FUSION_JOBS_EAGER = True
        failing = fusion_jobs.enqueue("t-always-fail", label="eager-fail")
        settings.FUSION_JOBS_EAGER = False
        queued = fusion_jobs.enqueue("t-record", label="published-anyway")
    assert (failing.mode, queued.mode) == ("inline", "queued")
    # Published at commit; marked so by the marking thread moments later (backends.confirms).
    wait_for(
        lambda: JobRun.objects.filter(pk=queued.run_id, published_at__isnull=False).exists(),
        what="the queued run to be marked published",
    )
    run = wait_for(
        lambda: JobRun.objects.filter(pk=queued.run_id, status="succeeded").first(),
        what="the queued run to succeed on the worker",
    )
    assert run.attempts == 1
    assert JobRun.objects.get(pk=failing.run_id).status == "failed"
    assert BROKER_URL in str(settings.FUSION_JOBS_BROKER_URL)


def test_a_tasks_own_on_publish_error_wins_over_the_setting(broker_down: Any) -> None:
    """``on_publish_error="outbox"`` on the task: kept for the relay, never run inline here."""
    broker_down.FUSION_JOBS_ON_PUBLISH_ERROR = "inline"
    handle = fusion_jobs.enqueue("t-outbox-record", label="kept")
    run = JobRun.objects.get(pk=handle.run_id)
    assert (run.status, run.mode, run.published_at) == ("queued", "worker", None)
    assert not Marker.objects.filter(label="kept").exists()
    inline = fusion_jobs.enqueue("t-record", label="ran-here")  # the setting still rules the others
    assert JobRun.objects.get(pk=inline.run_id).status == "succeeded"


def test_a_bad_on_publish_error_is_refused_at_declaration() -> None:
    with pytest.raises(fusion_jobs.exceptions.TaskDeclarationError, match="on_publish_error"):
        fusion_jobs.task(name="t-bad-policy", on_publish_error="retry-later")(lambda: None)
