"""Conformance of the Django Tasks backend without a broker: inline runs through the same recording.

Also the backend's contract that needs no worker: flags, validate_task, check(), argument
errors, get_result lookups and the status mapping.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import transaction

import fusion_jobs
from fusion_jobs.backends import django_tasks as backend_module
from fusion_jobs.backends.django_tasks import (
    FRAMEWORK,
    InvalidTask,
    TaskPayloadError,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_enqueued,
    task_finished,
    task_started,
)
from fusion_jobs.backends.django_tasks.execute import needs_row
from fusion_jobs.models import JobRun, RunStatus
from tests.fjdt import tasks as t
from tests.testapp.models import Marker

if FRAMEWORK == "django.tasks":
    from django.tasks import task, task_backends
else:
    from django_tasks import task, task_backends

pytestmark = pytest.mark.django_db(transaction=True)


def backend() -> Any:
    return task_backends["default"]


@pytest.fixture
def signals() -> Any:
    seen: list[tuple[str, str, str]] = []

    def receiver(name: str) -> Any:
        def receive(sender: Any, task_result: Any, **kwargs: Any) -> None:
            seen.append((name, task_result.id, str(task_result.status)))

        return receive

    receivers = {
        "enqueued": receiver("enqueued"),
        "started": receiver("started"),
        "finished": receiver("finished"),
    }
    task_enqueued.connect(receivers["enqueued"])
    task_started.connect(receivers["started"])
    task_finished.connect(receivers["finished"])
    yield seen
    task_enqueued.disconnect(receivers["enqueued"])
    task_started.disconnect(receivers["started"])
    task_finished.disconnect(receivers["finished"])


def test_the_backend_is_ours_and_says_what_it_supports():
    backend = task_backends["default"]
    assert type(backend).__name__ == "FusionJobsBackend"
    assert backend.supports_get_result is True
    assert backend.supports_async_task is True
    # Each flag is backed by behaviour: defer by the delayed start (enqueue_at), priority by
    # RabbitMQ priority queues (FUSION_JOBS_MAX_PRIORITY; refused without, never ignored).
    assert backend.supports_defer is True
    assert backend.supports_priority is True


def test_inline_success_is_recorded_and_read_back():
    result = t.add.enqueue(2, 3)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert result.is_finished and result.attempts == 1 and len(result.worker_ids) == 1
    assert (result.args, result.kwargs) == ([2, 3], {})  # as passed
    row = JobRun.objects.get(pk=result.id)
    assert (row.task_name, row.mode, row.status) == (t.add.module_path, "inline", "succeeded")
    assert row.kwargs == {"a": 2, "b": 3}  # stored by name, as every fusion-jobs run
    again = t.add.get_result(result.id)
    assert again.status == TaskResultStatus.SUCCESSFUL and again.return_value == 5
    assert again.enqueued_at and again.started_at and again.finished_at and again.last_attempted_at
    assert again.kwargs == {"a": 2, "b": 3} and again.args == []


def test_inline_failure_carries_the_exception_path_and_traceback():
    result = t.fail.enqueue("inline-fail")
    assert result.status == TaskResultStatus.FAILED
    assert [e.exception_class_path for e in result.errors] == ["tests.fjdt.tasks.PlannedError"]
    assert result.errors[0].exception_class is t.PlannedError
    assert "planned failure inline-fail" in result.errors[0].traceback
    assert "Traceback" in result.errors[0].traceback
    with pytest.raises(ValueError):
        result.return_value  # noqa: B018


def test_inline_signals_in_the_frameworks_order(signals):
    result = t.add.enqueue(1, 1)
    assert signals == [
        ("enqueued", result.id, "READY"),
        ("started", result.id, "RUNNING"),
        ("finished", result.id, "SUCCESSFUL"),
    ]
    signals.clear()
    failed = t.fail.enqueue("signal-fail")
    assert [s[0] for s in signals] == ["enqueued", "started", "finished"]
    assert signals[-1] == ("finished", failed.id, "FAILED")


def test_inline_enqueue_waits_for_commit_and_a_rollback_enqueues_nothing():
    with transaction.atomic():
        result = t.record.enqueue("on-commit")
        assert result.status == TaskResultStatus.READY
        assert not Marker.objects.filter(label="on-commit").exists()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert Marker.objects.filter(label="on-commit").count() == 1

    before = JobRun.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        t.record.enqueue("rolled-back")
        raise RuntimeError("roll back")
    assert JobRun.objects.count() == before
    assert not Marker.objects.filter(label="rolled-back").exists()


def test_takes_context_inline():
    result = t.with_context.enqueue(label="ctx-inline")
    assert result.status == TaskResultStatus.SUCCESSFUL
    seen = Marker.objects.get(label="ctx-inline").value
    assert seen == {"attempt": 1, "id": result.id, "status": "RUNNING", "workers": 1}


def test_async_task_runs_to_completion_inline():
    result = t.async_add.enqueue(20, 22)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value["sum"] == 42


def test_aenqueue_and_aget_result():
    result = async_to_sync(t.add.aenqueue)(4, 5)
    assert result.return_value == 9
    again = async_to_sync(t.add.aget_result)(result.id)
    assert again.return_value == 9
    async_to_sync(again.arefresh)()
    assert again.status == TaskResultStatus.SUCCESSFUL


def test_arguments_that_do_not_fit_fail_at_enqueue_and_write_nothing():
    before = JobRun.objects.count()
    with pytest.raises(fusion_jobs.TaskArgumentsError) as missing:
        t.add.enqueue(1)
    assert isinstance(missing.value, TypeError) and "b" in str(missing.value)
    with pytest.raises(fusion_jobs.TaskArgumentsError):
        t.add.enqueue(1, 2, c=3)
    with pytest.raises(TaskPayloadError) as not_json:
        t.add.enqueue(1, object())
    assert isinstance(not_json.value, fusion_jobs.PayloadError) and isinstance(not_json.value, TypeError)
    with pytest.raises(fusion_jobs.PayloadError, match="over the"):
        t.record.enqueue("big", "x" * 2_000_000)
    assert JobRun.objects.count() == before


def test_django_json_normalisation_of_arguments():
    result = t.record.enqueue("normalised", {"t": (1, 2), "b": b"bytes"})
    assert Marker.objects.get(label="normalised").value == {"t": [1, 2], "b": "bytes"}
    assert result.status == TaskResultStatus.SUCCESSFUL


def _nested() -> Any:
    def inner() -> None:
        pass

    return inner


def no_context(label: str) -> None:
    pass


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: task(_nested()), "module level"),
        (lambda: task(takes_context=True)(no_context), "context"),
        (lambda: task(priority=10)(no_context), "priority"),
        (lambda: task(priority=1000)(no_context), "priority"),
        (lambda: task(queue_name="nope")(no_context), "Queue"),
        (lambda: task(max_retries=-1)(no_context), "max_retries"),
        (lambda: task(execution_timeout="soon")(no_context), "execution_timeout"),
    ],
)
def test_invalid_tasks_are_rejected_when_declared(make, message):
    with pytest.raises(InvalidTask, match=message):
        make()


def test_run_after_needs_an_aware_datetime_or_is_refused():
    naive = dt.datetime(2030, 1, 1)
    with pytest.raises(InvalidTask):
        t.add.using(run_after=naive)


def test_get_result_for_unknown_ids():
    for bad in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        with pytest.raises(TaskResultDoesNotExist):
            backend().get_result(bad)
    plain = fusion_jobs.enqueue("t-record", label="plain-fusion-run")
    with pytest.raises(TaskResultDoesNotExist):
        backend().get_result(plain.run_id)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (RunStatus.QUEUED, "READY"),
        (RunStatus.RUNNING, "RUNNING"),
        (RunStatus.RETRYING, "READY"),
        (RunStatus.SUCCEEDED, "SUCCESSFUL"),
        (RunStatus.FAILED, "FAILED"),
        (RunStatus.TIMED_OUT, "FAILED"),
        (RunStatus.CANCELLED, "FAILED"),
        (RunStatus.SKIPPED, "FAILED"),
    ],
)
def test_status_mapping(status, expected):
    row = JobRun.objects.create(task_name=t.add.module_path, status=status, kwargs={"a": 1, "b": 2})
    result = backend().get_result(str(row.pk))
    assert result.status == TaskResultStatus(expected)
    assert set(backend_module.STATUS_MAP) == set(RunStatus.values)


def test_check_reports_bad_options_and_queues():
    backend_class = type(backend())
    good = backend_class("good", {"OPTIONS": {"max_retries": 2, "execution_timeout": "10m"}})
    assert good.check() == []
    bad = backend_class("bad", {"QUEUES": ["ok", "9bad"], "OPTIONS": {"max_retries": "x", "nope": 1}})
    messages = [m.msg for m in bad.check()]
    assert any("max_retries" in m for m in messages)
    assert any("nope" in m for m in messages)
    assert any("9bad" in m for m in messages)
    assert all(m.id == "fusion_jobs.E050" for m in bad.check())
    policy = backend_class("policy", {"OPTIONS": {"on_publish_error": "sometimes"}})
    assert any("on_publish_error" in m.msg for m in policy.check())
    assert backend_class("outbox", {"OPTIONS": {"on_publish_error": "outbox"}}).check() == []


def test_on_publish_error_from_the_decorator_keeps_a_failed_publish_in_the_outbox(settings):
    """Backend-wide in OPTIONS or per task: the run stays queued for the relay, not run inline."""
    from fusion_jobs.backends.broker import reset_broker

    assert fusion_jobs.registry.get_task(t.outbox_record.module_path).on_publish_error == "outbox"
    settings.FUSION_JOBS_BROKER_URL = "amqp://guest:guest@127.0.0.1:1/"  # nothing listens: the publish fails
    settings.FUSION_JOBS_ON_PUBLISH_ERROR = "inline"
    reset_broker()
    try:
        result = t.outbox_record.enqueue("kept")
    finally:
        reset_broker()
    run = JobRun.objects.get(pk=result.id)
    assert (run.status, run.published_at) == ("queued", None)
    assert not Marker.objects.filter(label="kept").exists()


def test_options_become_the_registered_tasks_defaults():
    registered = fusion_jobs.registry.get_task(t.flaky.module_path)
    assert (registered.max_retries, registered.min_backoff, registered.max_backoff) == (2, 0.1, 0.2)
    assert fusion_jobs.registry.get_task(t.sleeper.module_path).execution_timeout == 1.0


def test_jobs_status_lists_django_tasks():
    assert t.add.module_path in fusion_jobs.get_jobs_status()["tasks"]


def test_ensure_cron_and_enqueue_accept_a_django_task():
    schedule = fusion_jobs.ensure_cron(t.record, "dt-cron", "*/5 * * * *", input={"label": "from-cron"})
    assert schedule.task_name == t.record.module_path
    again = fusion_jobs.ensure_cron(t.record, "dt-cron", "*/5 * * * *", input={"label": "from-cron"})
    assert again.updated_at == schedule.updated_at  # idempotent
    with pytest.raises(fusion_jobs.TaskArgumentsError):
        fusion_jobs.ensure_cron(t.record, "dt-cron-bad", "*/5 * * * *", input={"lable": "typo"})
    handle = fusion_jobs.enqueue(t.add, a=1, b=2)
    assert t.add.get_result(handle.run_id).return_value == 3


def test_run_after_without_a_broker_runs_now():
    when = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    result = t.add.using(run_after=when).enqueue(1, 2)
    assert result.status == TaskResultStatus.SUCCESSFUL  # inline ignores the start time, as logged


def test_a_task_stays_on_the_queue_it_was_declared_with(settings):
    settings.TASKS = {
        "default": {
            "BACKEND": "fusion_jobs.backends.django_tasks.FusionJobsBackend",
            "QUEUES": ["default", "other"],
        }
    }
    # The worker accepts a task's messages only on its declared queue (and consumes only those).
    with pytest.raises(InvalidTask, match="declared on queue 'default'"):
        t.add.using(queue_name="other").enqueue(1, 1)
    assert t.add.using(queue_name="default").enqueue(1, 1).return_value == 2


@pytest.fixture
def no_project_receivers():
    task_started.disconnect(dispatch_uid="fjdt-started")
    task_finished.disconnect(dispatch_uid="fjdt-finished")
    yield
    task_started.connect(t._on_started, dispatch_uid="fjdt-started")
    task_finished.connect(t._on_finished, dispatch_uid="fjdt-finished")


def test_without_project_receivers_an_attempt_reads_no_row(no_project_receivers, django_assert_num_queries):
    # Only the framework's own log receivers: the attempt builds its result without a query.
    assert not needs_row(t.add)
    assert needs_row(t.with_context)
    registered = fusion_jobs.registry.get_task(t.add.module_path)
    from fusion_jobs.context import RunContext, activate, deactivate
    from fusion_jobs.recording import Attempt

    token = activate(RunContext(Attempt("00000000-0000-4000-8000-000000000001", 1, registered.name)))
    try:
        with django_assert_num_queries(0):
            assert registered.fn(a=1, b=2) == 3
    finally:
        deactivate(token)
    assert t.add.enqueue(2, 2).return_value == 4
    failed = t.fail.enqueue("cheap-fail")
    assert failed.status == TaskResultStatus.FAILED
    assert failed.errors[0].exception_class_path.endswith("PlannedError")


def test_inline_after_commit_signals_and_a_final_failure(signals):
    with transaction.atomic():
        result = t.fail.enqueue("after-commit-fail")
        assert signals == [("enqueued", result.id, "READY")]
    assert signals == [
        ("enqueued", result.id, "READY"),
        ("started", result.id, "RUNNING"),
        ("finished", result.id, "FAILED"),
    ]


def test_the_frameworks_log_lines_without_project_receivers(no_project_receivers, caplog):
    logger = "django.tasks" if FRAMEWORK == "django.tasks" else "django_tasks"
    caplog.set_level("DEBUG", logger=logger)
    result = t.add.enqueue(1, 2)
    lines = [r.getMessage() for r in caplog.records if r.name == logger]
    assert len(lines) == 3, lines
    assert "enqueued" in lines[0] and result.id in lines[0]
    assert "state=RUNNING" in lines[1] and "state=SUCCESSFUL" in lines[2]
    caplog.clear()
    failed = t.fail.enqueue("log-fail")
    lines = [r.getMessage() for r in caplog.records if r.name == logger]
    assert len(lines) == 3 and "state=FAILED" in lines[2] and failed.id in lines[2]


def test_positional_only_star_args_and_extra_keywords_round_trip():
    result = t.variadic.enqueue(1, 2, 3, 4, c=5, d=6)
    assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
    assert {k: v for k, v in result.return_value.items() if k != "pid"} == {
        "a": 1,
        "b": 2,
        "rest": [3, 4],
        "c": 5,
        "extra": {"d": 6},
    }
    assert JobRun.objects.get(pk=result.id).kwargs == {"a": 1, "b": 2, "rest": [3, 4], "c": 5, "d": 6}
    assert t.variadic.enqueue(1, 2).return_value["rest"] == []
    with pytest.raises(fusion_jobs.TaskArgumentsError, match="share a parameter's name"):
        t.variadic.enqueue(1, 2, a=9)  # legal in Python (a is positional-only), but not storable


def test_system_exit_in_a_task_is_a_recorded_failure():
    result = t.exits.enqueue()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class is SystemExit
    assert result.errors[0].traceback.endswith("SystemExit: task exits\n")
    assert JobRun.objects.get(pk=result.id).status == "failed"


def test_keyboard_interrupt_goes_through():
    with pytest.raises(KeyboardInterrupt):
        t.interrupted.enqueue()


def test_priority_needs_priority_queues_and_maps_onto_them(settings):
    from fusion_jobs.backends.messages import broker_priority, build_message

    with pytest.raises(InvalidTask, match="FUSION_JOBS_MAX_PRIORITY"):
        t.add.using(priority=10)
    settings.FUSION_JOBS_MAX_PRIORITY = 10
    high = t.add.using(priority=100)
    assert [broker_priority(p) for p in (-100, -50, 0, 50, 100)] == [0, 2, 5, 8, 10]
    registered = fusion_jobs.registry.get_task(high.module_path)
    from dataclasses import replace

    message = build_message(
        replace(registered, priority=high.priority), "00000000-0000-4000-8000-000000000002", {}
    )
    assert message.options["broker_priority"] == 10
    settings.FUSION_JOBS_MAX_PRIORITY = 0
    assert (
        "broker_priority" not in build_message(registered, "00000000-0000-4000-8000-000000000003", {}).options
    )
