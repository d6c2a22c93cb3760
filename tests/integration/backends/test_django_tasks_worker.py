"""Conformance of the Django Tasks backend on the real RabbitMQ and PostgreSQL with a real worker.

Every status path (success, failure, retry, timeout, cancel), ``get_result`` across processes,
context and async tasks on the worker, and the framework's signals sent by the worker.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from fusion_jobs.backends.django_tasks import FRAMEWORK, TaskResultStatus
from fusion_jobs.models import JobRun
from fusion_jobs.recording import cancel
from tests.conftest import wait_for
from tests.fjdt import tasks as t
from tests.testapp.models import Marker

if FRAMEWORK == "django.tasks":
    from django.tasks import task_backends
else:
    from django_tasks import task_backends

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]


def finished(task: Any, result_id: str) -> Any:
    result = task.get_result(result_id)
    return result if result.is_finished else None


def signals_of(result_id: str) -> list[tuple[str, str]]:
    rows = Marker.objects.filter(label=f"signal:{result_id}").order_by("id")
    return [(m.value["signal"], m.value["status"]) for m in rows]


def test_success_on_the_worker_read_back_here(broker_settings, worker):
    result = t.record.enqueue("dt-worker", {"n": 1})
    assert result.status == TaskResultStatus.READY
    assert result.args == ["dt-worker", {"n": 1}]
    done = wait_for(lambda: finished(t.record, result.id), what="the Django task to finish")
    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.return_value["label"] == "dt-worker"
    assert done.return_value["pid"] != os.getpid()  # it ran on the worker
    assert done.attempts == 1 and done.worker_ids == [JobRun.objects.get(pk=result.id).worker]
    assert done.enqueued_at <= done.started_at <= done.finished_at
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == done.return_value
    row = JobRun.objects.get(pk=result.id)
    assert (row.mode, row.task_name, row.status) == ("worker", t.record.module_path, "succeeded")
    assert signals_of(result.id) == [("started", "RUNNING"), ("finished", "SUCCESSFUL")]


def test_failure_on_the_worker(broker_settings, worker):
    result = t.fail.enqueue("dt-fail")
    done = wait_for(lambda: finished(t.fail, result.id))
    assert done.status == TaskResultStatus.FAILED
    assert [e.exception_class_path for e in done.errors] == ["tests.fjdt.tasks.PlannedError"]
    assert "planned failure dt-fail" in done.errors[0].traceback
    assert signals_of(result.id) == [("started", "RUNNING"), ("finished", "FAILED")]


def test_retries_then_success_with_every_attempt_seen(broker_settings, worker):
    result = t.flaky.enqueue("dt-flaky", 2)
    done = wait_for(lambda: finished(t.flaky, result.id), timeout=30)
    assert done.status == TaskResultStatus.SUCCESSFUL and done.return_value == "ok"
    assert done.attempts == 3 and len(done.worker_ids) == 3
    assert [e.exception_class_path for e in done.errors] == ["builtins.RuntimeError"] * 2
    # task_started on every attempt, task_finished once, when the task is finished.
    assert signals_of(result.id) == [("started", "RUNNING")] * 3 + [("finished", "SUCCESSFUL")]


def test_retrying_reads_as_ready(broker_settings, worker):
    result = t.flaky.enqueue("dt-retrying", 2)
    wait_for(lambda: JobRun.objects.get(pk=result.id).status == "retrying" or None, timeout=30)
    # A run between attempts is READY again (it may have moved on by the time we read it).
    seen = t.flaky.get_result(result.id).status
    assert seen in (TaskResultStatus.READY, TaskResultStatus.RUNNING, TaskResultStatus.SUCCESSFUL)
    wait_for(lambda: finished(t.flaky, result.id), timeout=30)


def test_timeout_is_failed_with_the_time_limit_error(broker_settings, worker):
    result = t.sleeper.enqueue(10)
    done = wait_for(lambda: finished(t.sleeper, result.id), timeout=30)
    assert done.status == TaskResultStatus.FAILED
    assert JobRun.objects.get(pk=result.id).status == "timed_out"
    assert done.errors[-1].exception_class_path == "dramatiq.middleware.time_limit.TimeLimitExceeded"


def test_cancelled_before_start_is_failed_and_never_runs(broker_settings, worker):
    with transaction.atomic():
        result = t.record.enqueue("dt-cancelled")
        cancel([result.id])
    done = wait_for(lambda: finished(t.record, result.id))
    assert done.status == TaskResultStatus.FAILED
    assert JobRun.objects.get(pk=result.id).status == "cancelled"
    probe = t.record.enqueue("dt-after-cancel")  # published after it: the worker has seen it by then
    wait_for(lambda: finished(t.record, probe.id))
    assert not Marker.objects.filter(label="dt-cancelled").exists()


def test_takes_context_on_every_attempt(broker_settings, worker):
    result = t.with_context.enqueue(label="dt-ctx", failures=1)
    done = wait_for(lambda: finished(t.with_context, result.id), timeout=30)
    assert done.status == TaskResultStatus.SUCCESSFUL
    seen = [m.value for m in Marker.objects.filter(label="dt-ctx").order_by("id")]
    assert [s["attempt"] for s in seen] == [1, 2]
    assert {s["id"] for s in seen} == {result.id}
    assert [s["workers"] for s in seen] == [1, 2]
    assert done.return_value["attempt"] == 2


def test_async_task_on_the_worker(broker_settings, worker):
    result = t.async_add.enqueue(2, 40)
    done = wait_for(lambda: finished(t.async_add, result.id))
    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.return_value["sum"] == 42 and done.return_value["pid"] != os.getpid()


def test_rolled_back_enqueue_publishes_nothing(broker_settings, worker):
    with pytest.raises(RuntimeError), transaction.atomic():
        result = t.record.enqueue("dt-rollback")
        raise RuntimeError("roll back")
    probe = t.record.enqueue("dt-after-rollback")
    wait_for(lambda: finished(t.record, probe.id))
    assert not JobRun.objects.filter(pk=result.id).exists()
    assert not Marker.objects.filter(label="dt-rollback").exists()


def test_get_result_through_the_backend_handler(broker_settings, worker):
    result = t.add.enqueue(20, 1)
    wait_for(lambda: finished(t.add, result.id))
    assert task_backends["default"].get_result(result.id).return_value == 21


def test_run_after_is_not_run_early_and_runs_once(broker_settings, worker):
    when = timezone.now() + dt.timedelta(seconds=4)
    result = t.record.using(run_after=when).enqueue("dt-deferred")
    assert result.status == TaskResultStatus.READY
    row = JobRun.objects.get(pk=result.id)
    assert row.next_attempt_at == when and row.published_at is None
    time.sleep(1.5)
    assert t.record.get_result(result.id).status == TaskResultStatus.READY
    assert not Marker.objects.filter(label="dt-deferred").exists()
    done = wait_for(lambda: finished(t.record, result.id), timeout=60, what="the deferred run")
    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.started_at >= when
    time.sleep(1)
    assert Marker.objects.filter(label="dt-deferred").count() == 1


def test_positional_arguments_on_the_worker(broker_settings, worker):
    result = t.variadic.enqueue(1, 2, 3, c=4, d=5)
    done = wait_for(lambda: finished(t.variadic, result.id))
    assert done.status == TaskResultStatus.SUCCESSFUL, done.errors
    assert done.return_value["pid"] != os.getpid()
    assert (done.return_value["rest"], done.return_value["extra"]) == ([3], {"d": 5})


@pytest.fixture
def priority_vhost(settings):
    """A vhost of its own: its queues are declared with x-max-priority from the start."""
    import subprocess

    from fusion_jobs.backends.broker import reset_broker
    from tests.conftest import BROKER_URL

    vhost = "fj_django_tasks_priority"
    subprocess.run(["rabbitmqctl", "add_vhost", vhost], check=True, capture_output=True, timeout=60)
    subprocess.run(
        ["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    url = BROKER_URL.rsplit("/", 1)[0] + "/" + vhost
    settings.FUSION_JOBS_BROKER_URL = url
    settings.FUSION_JOBS_MAX_PRIORITY = 10
    reset_broker()
    yield url
    reset_broker()
    subprocess.run(["rabbitmqctl", "delete_vhost", vhost], check=True, capture_output=True, timeout=60)


def test_priority_orders_a_loaded_queue(priority_vhost, make_worker):
    worker = make_worker(
        threads=1,
        queues=("default",),
        env={"FUSION_JOBS_WORKER_BROKER_URL": priority_vhost, "FUSION_JOBS_MAX_PRIORITY": "10"},
    )
    blocker = t.slow.enqueue("prio-blocker", 3)
    wait_for(lambda: Marker.objects.filter(label="prio-blocker:start").exists(), what="the blocker")
    # The one worker thread is busy: everything below waits in the queue, low priority first.
    low = [t.record.using(priority=-50).enqueue(f"prio-low-{i}") for i in range(5)]
    high = [t.record.using(priority=50).enqueue(f"prio-high-{i}") for i in range(5)]
    for result in [blocker, *low, *high]:
        wait_for(lambda r=result: finished(t.record if r in low + high else t.slow, r.id), timeout=60)
    order = list(
        Marker.objects.filter(label__startswith="prio-")
        .exclude(label__startswith="prio-blocker")
        .order_by("id")
        .values_list("label", flat=True)
    )
    assert order[:5] == [f"prio-high-{i}" for i in range(5)], (order, worker.output()[-2000:])
    assert order[5:] == [f"prio-low-{i}" for i in range(5)]


def test_admin_retry_of_a_django_task_run(broker_settings, worker):
    from fusion_jobs.api import retry_run

    failed = t.fail.enqueue("dt-retry-me")
    wait_for(lambda: finished(t.fail, failed.id))
    again = retry_run(failed.id, requested_by="admin")
    done = wait_for(lambda: finished(t.fail, again.run_id))
    assert done.status == TaskResultStatus.FAILED  # it fails again, but it ran again, as a Django task
    assert Marker.objects.filter(label="dt-retry-me").count() == 2
    assert JobRun.objects.get(pk=again.run_id).retry_of_id is not None
