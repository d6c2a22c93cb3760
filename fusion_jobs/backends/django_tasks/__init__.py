"""A backend for Django's Tasks framework: ``@django.tasks.task`` functions run as fusion-jobs runs.

``TASKS = {"default": {"BACKEND": "fusion_jobs.backends.django_tasks.FusionJobsBackend"}}``.
The framework comes from ``django.tasks`` (Django 6) or the ``django-tasks`` backport (5.2).

A Django ``Task`` that uses this backend is registered as a fusion-jobs task named after its
``module_path`` the moment it is created (the framework validates every Task with its backend),
so the web process and a worker that autodiscovered the same module know the same actors. A
broker message can only name a task registered so; nothing is imported from a message. Runs
then take fusion-jobs' one path: a ``JobRun`` row, enqueue on commit, the worker's recording,
retries and timeouts, or inline with the same recording when no broker is configured.
"""

from .arguments import TaskPayloadError
from .backend import TASK_OPTIONS, FusionJobsBackend, FusionTask
from .framework import (
    FRAMEWORK,
    InvalidTask,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_enqueued,
    task_finished,
    task_started,
)
from .results import STATUS_MAP

__all__ = [
    "FRAMEWORK",
    "STATUS_MAP",
    "TASK_OPTIONS",
    "FusionJobsBackend",
    "FusionTask",
    "InvalidTask",
    "TaskPayloadError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "task_enqueued",
    "task_finished",
    "task_started",
]
