"""Demo tasks: the smallest possible job, and one that shows progress."""

from __future__ import annotations

import time

import fusion_jobs
from fusion_jobs.backends.django_tasks import FRAMEWORK

if FRAMEWORK == "django.tasks":
    from django.tasks import task as django_task
else:  # Django 5.2: the django-tasks backport
    from django_tasks import task as django_task


@fusion_jobs.task(name="demo-hello", execution_timeout="30s", max_retries=0)
def hello(name: str = "world") -> dict[str, str]:
    """Say hello: proves a job ran, where it ran, and what it returned."""
    return {"greeting": f"Hello, {name}!", "run": fusion_jobs.current_run_id() or ""}


@fusion_jobs.task(name="demo-count", execution_timeout="2m", max_retries=1)
def count(to: int = 20, delay: float = 0.1) -> int:
    """Count slowly, reporting progress, so the admin and the sandbox page have something to watch."""
    for i in range(1, to + 1):
        time.sleep(delay)
        fusion_jobs.report_progress("counting", i, to)
    return to


@django_task(execution_timeout="30s", max_retries=0)
def django_hello(name: str = "world") -> dict[str, str]:
    """The same hello, declared with Django's ``@task`` and run by fusion-jobs' Tasks backend."""
    return {"greeting": f"Hello, {name}, from a Django @task!", "run": fusion_jobs.current_run_id() or ""}
