"""``enqueue()`` refuses at the call what can never run, and an inline outcome is always recorded.

On the real PostgreSQL (and RabbitMQ for the queued path): arguments that don't fit the task's
signature, and payloads PostgreSQL or JSON cannot carry, raise before anything is written or
published, leaving the caller's transaction usable.
"""

from __future__ import annotations

from typing import Any

import pika
import pytest
from django.db import transaction

import fusion_jobs
from fusion_jobs.exceptions import FusionJobsError, PayloadError, TaskArgumentsError
from fusion_jobs.models import CronSchedule, JobRun
from tests.conftest import BROKER_URL, purge_queues, wait_for
from tests.testapp.models import Marker

pytestmark = pytest.mark.django_db(transaction=True)


def queued_messages(queue: str = "default") -> int:
    connection = pika.BlockingConnection(pika.URLParameters(BROKER_URL))
    try:
        declared = connection.channel().queue_declare(queue, passive=True)
        return int(declared.method.message_count)
    except pika.exceptions.ChannelClosedByBroker:  # never declared: nothing was published
        return 0
    finally:
        connection.close()


BAD_ARGUMENTS = [
    ({"lable": "x"}, r"t-record: unexpected argument 'lable' \(did you mean 'label'\?\)"),
    ({}, r"t-record: missing required argument 'label'"),
    ({"label": "x", "extra": 1}, r"t-record: unexpected argument 'extra'; it takes label, value"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_ARGUMENTS)
def test_inline_arguments_that_do_not_fit_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TaskArgumentsError, match=message) as caught:
        fusion_jobs.enqueue("t-record", **kwargs)
    assert isinstance(caught.value, FusionJobsError) and isinstance(caught.value, TypeError)
    assert JobRun.objects.count() == 0 and Marker.objects.count() == 0


@pytest.mark.broker
@pytest.mark.parametrize(("kwargs", "message"), BAD_ARGUMENTS)
def test_queued_arguments_that_do_not_fit_are_refused(
    broker_settings: str, kwargs: dict[str, Any], message: str
) -> None:
    purge_queues()
    with pytest.raises(TaskArgumentsError, match=message):
        fusion_jobs.enqueue("t-record", **kwargs)
    assert JobRun.objects.count() == 0
    assert queued_messages() == 0


def test_enqueue_many_names_the_bad_item_and_writes_nothing() -> None:
    with pytest.raises(TaskArgumentsError, match=r"t-record \(item 1\): unexpected argument 'lable'"):
        fusion_jobs.enqueue_many("t-record", [{"label": "ok"}, {"lable": "typo"}])
    assert JobRun.objects.count() == 0 and Marker.objects.count() == 0


def test_ensure_cron_input_that_does_not_fit_is_refused() -> None:
    with pytest.raises(
        TaskArgumentsError, match=r"cron 't-cron-bad' \(task 't-cron-record'\): unexpected argument 'lable'"
    ):
        fusion_jobs.ensure_cron("t-cron-record", "t-cron-bad", "* * * * *", {"lable": "x"})
    assert not CronSchedule.objects.exists()


def test_nul_is_refused_before_the_insert_and_the_callers_transaction_goes_on() -> None:
    with transaction.atomic():
        Marker.objects.create(label="before")
        with pytest.raises(PayloadError, match=r"t-echo: kwargs\['a'\]\[0\]\['b'\] contains a NUL"):
            fusion_jobs.enqueue("t-echo", a=[{"b": "x\x00y"}])
        Marker.objects.create(label="after")  # the transaction was not broken by a failed INSERT
    assert sorted(Marker.objects.values_list("label", flat=True)) == ["after", "before"]
    assert JobRun.objects.count() == 0


@pytest.mark.broker
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"a": "x\ud800"}, "lone surrogate"),
        ({"a": 2**64}, "outside the signed 64-bit range"),
        ({"a": "\x00"}, "NUL"),
    ],
)
def test_queued_payload_errors_write_and_publish_nothing(
    broker_settings: str, kwargs: dict[str, Any], message: str
) -> None:
    purge_queues()
    with pytest.raises(PayloadError, match=message):
        fusion_jobs.enqueue("t-echo", **kwargs)
    with pytest.raises(PayloadError, match=rf"t-echo \(item 1\): kwargs\['a'\] .*{message}"):
        fusion_jobs.enqueue_many("t-echo", [{"a": 1}, kwargs])
    assert JobRun.objects.count() == 0
    assert queued_messages() == 0


@pytest.mark.parametrize("in_transaction", [False, True], ids=["autocommit", "in-transaction"])
def test_inline_result_with_nul_is_recorded_sanitised(in_transaction: bool) -> None:
    if in_transaction:
        with transaction.atomic():
            handle = fusion_jobs.enqueue("t-nul-result", label="r")
    else:
        handle = fusion_jobs.enqueue("t-nul-result", label="r")
    assert handle.status == "succeeded"
    run = JobRun.objects.get(pk=handle.run_id)
    assert run.status == "succeeded"
    assert run.result == {"text": "a\ufffdb", "lone": "\ufffd", "label": "r"}


@pytest.mark.parametrize("in_transaction", [False, True], ids=["autocommit", "in-transaction"])
def test_inline_error_with_nul_is_recorded_sanitised(in_transaction: bool) -> None:
    if in_transaction:
        with transaction.atomic():
            handle = fusion_jobs.enqueue("t-nul-error", label="e")
    else:
        handle = fusion_jobs.enqueue("t-nul-error", label="e")
    assert handle.status == "failed"
    run = JobRun.objects.get(pk=handle.run_id)
    assert run.status == "failed"
    assert run.error == "ValueError: bad byte \ufffd and \ufffd in e"
    assert "bad byte \ufffd and \ufffd in e" in run.traceback


def test_inline_raise_raises_the_tasks_error_not_a_database_error(settings: Any) -> None:
    settings.FUSION_JOBS_INLINE_RAISE = True
    with pytest.raises(ValueError, match="bad byte"):
        fusion_jobs.enqueue("t-nul-error", label="raised")
    assert JobRun.objects.get().status == "failed"


@pytest.mark.broker
def test_worker_outcomes_with_nul_are_recorded_sanitised(broker_settings: str, worker: Any) -> None:
    ok = fusion_jobs.enqueue("t-nul-result", label="w-r")
    bad = fusion_jobs.enqueue("t-nul-error", label="w-e")

    def finished(run_id: str) -> JobRun | None:
        run = JobRun.objects.get(pk=run_id)
        return run if run.is_terminal else None

    run = wait_for(lambda: finished(ok.run_id), what="the NUL-result run to finish")
    assert run.status == "succeeded"
    assert run.result == {"text": "a\ufffdb", "lone": "\ufffd", "label": "w-r"}
    run = wait_for(lambda: finished(bad.run_id), what="the NUL-error run to finish")
    assert run.status == "failed"
    assert run.error == "ValueError: bad byte \ufffd and \ufffd in w-e"
