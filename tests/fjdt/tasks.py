"""Django Tasks framework tasks (``@task`` from django.tasks or the backport) run by fusion-jobs.

Autodiscovered as ``<app>.tasks`` in the test process and in worker subprocesses alike. Effects and
the framework's signals are left as ``Marker`` rows, so a test sees what a worker did.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from fusion_jobs.backends.django_tasks import FRAMEWORK, task_finished, task_started
from tests.testapp.models import Marker

if FRAMEWORK == "django.tasks":
    from django.tasks import task
else:
    from django_tasks import task


@task
def add(a: int, b: int) -> int:
    return a + b


@task(max_retries=0)
def variadic(a: int, /, b: int, *rest: int, c: int = 0, **extra: Any) -> dict[str, Any]:
    return {"a": a, "b": b, "rest": list(rest), "c": c, "extra": extra, "pid": os.getpid()}


@task(max_retries=0)
def record(label: str, value: Any = None) -> dict[str, Any]:
    Marker.objects.create(label=label, value=value)
    return {"label": label, "pid": os.getpid()}


@task(max_retries=0, on_publish_error="outbox")
def outbox_record(label: str) -> None:
    Marker.objects.create(label=label)


class PlannedError(Exception):
    pass


@task(max_retries=0)
def fail(label: str) -> None:
    Marker.objects.create(label=label)
    raise PlannedError(f"planned failure {label}")


@task(max_retries=0)
def exits() -> None:
    raise SystemExit("task exits")


@task(max_retries=0)
def interrupted() -> None:
    raise KeyboardInterrupt("stop")


@task(max_retries=2, min_backoff=0.1, max_backoff=0.2)
def flaky(label: str, failures: int) -> str:
    done = Marker.objects.filter(label=label).count()
    Marker.objects.create(label=label)
    if done < failures:
        raise RuntimeError(f"attempt {done + 1} fails")
    return "ok"


@task(takes_context=True, max_retries=2, min_backoff=0.1, max_backoff=0.2)
def with_context(context: Any, label: str, failures: int = 0) -> dict[str, Any]:
    seen = {
        "attempt": context.attempt,
        "id": context.task_result.id,
        "status": str(context.task_result.status),
        "workers": len(context.task_result.worker_ids),
    }
    Marker.objects.create(label=label, value=seen)
    if context.attempt <= failures:
        raise RuntimeError(f"attempt {context.attempt} fails")
    return seen


@task
async def async_add(a: int, b: int) -> dict[str, Any]:
    await asyncio.sleep(0.01)
    return {"sum": a + b, "pid": os.getpid()}


@task(execution_timeout="1s", max_retries=0)
def sleeper(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # pure Python: the soft time limit can interrupt it
        time.sleep(0.01)


@task(max_retries=0)
def slow(label: str, seconds: float) -> str:
    Marker.objects.create(label=f"{label}:start")
    time.sleep(seconds)
    return "done"


def _record_signal(name: str, task_result: Any) -> None:
    if task_result.task.module_path.startswith(__name__):
        Marker.objects.create(
            label=f"signal:{task_result.id}",
            value={"signal": name, "status": str(task_result.status), "pid": os.getpid()},
        )


def _on_started(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _record_signal("started", task_result)


def _on_finished(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _record_signal("finished", task_result)


task_started.connect(_on_started, dispatch_uid="fjdt-started")
task_finished.connect(_on_finished, dispatch_uid="fjdt-finished")
