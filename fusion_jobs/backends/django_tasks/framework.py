"""The Tasks framework's names, from ``django.tasks`` (Django 6) or the ``django-tasks`` backport (5.2)."""

from __future__ import annotations

from importlib import import_module
from importlib.util import find_spec
from typing import Any


def _framework_package() -> str:
    """``django.tasks`` when this Django has it, else the backport (as django-tasks-db detects it)."""
    return "django.tasks" if find_spec("django.tasks") is not None else "django_tasks"


FRAMEWORK = _framework_package()
_base = import_module(f"{FRAMEWORK}.base")
_exceptions = import_module(f"{FRAMEWORK}.exceptions")
_signals = import_module(f"{FRAMEWORK}.signals")
_json = import_module("django.utils.json" if FRAMEWORK == "django.tasks" else "django_tasks.utils")

BaseTaskBackend: Any = import_module(f"{FRAMEWORK}.backends.base").BaseTaskBackend
DjangoTask: Any = _base.Task
TaskResult: Any = _base.TaskResult
TaskResultStatus: Any = _base.TaskResultStatus
TaskContext: Any = _base.TaskContext
TaskError: Any = _base.TaskError
# The backport names its exceptions ``InvalidTaskError``; Django ``InvalidTask``.
InvalidTask: Any = getattr(_exceptions, "InvalidTask", None) or _exceptions.InvalidTaskError
TaskResultDoesNotExist: Any = _exceptions.TaskResultDoesNotExist
task_enqueued: Any = _signals.task_enqueued
task_started: Any = _signals.task_started
task_finished: Any = _signals.task_finished
normalize_json: Any = _json.normalize_json
