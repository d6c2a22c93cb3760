"""``FusionJobsBackend``: the framework's backend interface, and the options a task may set."""

from __future__ import annotations

import inspect
import re
import uuid
from dataclasses import dataclass, replace
from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from ... import api
from ...conf import PUBLISH_ERROR_POLICIES, QUEUE_NAME, jobs_settings
from ...exceptions import TaskDeclarationError
from ...models import HANDLE_INLINE, JobRun
from ...recording import db_alias
from ...registry import Task as FusionJobsTask
from ...registry import get_task, register
from ...registry import task as fusion_task
from ...utils import parse_duration
from .arguments import bind_arguments
from .execute import declared, expect_after_commit, runner, running_inline
from .framework import (
    BaseTaskBackend,
    DjangoTask,
    InvalidTask,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task_enqueued,
)
from .results import result_of

#: Backend-wide defaults (``OPTIONS``) and per-task options (``@task(max_retries=3, ...)``).
TASK_OPTIONS = (
    "execution_timeout",
    "max_retries",
    "min_backoff",
    "max_backoff",
    "retry_on_timeout",
    "on_publish_error",
)
_DURATIONS = ("execution_timeout", "min_backoff", "max_backoff")
# fusion-jobs' rules for task and queue names (registry.py).
_NAME = re.compile(r"^[A-Za-z0-9<][A-Za-z0-9_.:<>-]{0,199}$")
_QUEUE = re.compile(f"^{QUEUE_NAME}$")


def _option_problem(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if key in _DURATIONS:
        try:
            parse_duration(value)
        except ValueError as exc:
            return f"{key}: {exc}"
    elif key == "max_retries":
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"max_retries must be a whole number >= 0, got {value!r}"
    elif key == "retry_on_timeout" and not isinstance(value, bool):
        return f"retry_on_timeout must be True or False, got {value!r}"
    elif key == "on_publish_error" and value not in PUBLISH_ERROR_POLICIES:
        return f"on_publish_error must be one of {', '.join(PUBLISH_ERROR_POLICIES)}, got {value!r}"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class FusionTask(DjangoTask):
    """The framework's Task plus fusion-jobs' per-task options, given to the decorator:
    ``@task(execution_timeout="600s", max_retries=3, min_backoff=..., max_backoff=...,
    retry_on_timeout=False, on_publish_error="outbox")``. Unset options take the backend's ``OPTIONS``, then the settings.
    """

    execution_timeout: Any = None
    max_retries: int | None = None
    min_backoff: Any = None
    max_backoff: Any = None
    retry_on_timeout: bool | None = None
    on_publish_error: str | None = None


class FusionJobsBackend(BaseTaskBackend):
    """Django Tasks backend on fusion-jobs: Dramatiq + RabbitMQ, run history in PostgreSQL."""

    task_class = FusionTask
    supports_defer = True  # run_after is the delayed start held in PostgreSQL (enqueue_at)
    supports_async_task = True
    supports_get_result = True
    supports_priority = True  # with FUSION_JOBS_MAX_PRIORITY set; refused, not ignored, without

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.problems = self._option_problems()

    def _option_problems(self) -> list[str]:
        problems = []
        if not isinstance(self.options, dict):
            return [f"OPTIONS must be a dict, got {type(self.options).__name__}"]
        unknown = sorted(set(self.options) - set(TASK_OPTIONS))
        if unknown:
            problems.append(f"unknown OPTIONS {', '.join(unknown)}; known: {', '.join(TASK_OPTIONS)}")
        for key in TASK_OPTIONS:
            problem = _option_problem(key, self.options.get(key))
            if problem:
                problems.append(f"OPTIONS {problem}")
        for queue in sorted(self.queues):
            if not isinstance(queue, str) or not _QUEUE.match(queue) or queue.endswith((".DQ", ".XQ")):
                problems.append(f"QUEUES: bad queue name {queue!r} (letters, digits, '.', '_', '-')")
        return problems

    def _configured(self) -> None:
        if self.problems:
            raise ImproperlyConfigured(f"TASKS[{self.alias!r}]: {self.problems[0]}")

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        return [
            checks.Error(f"TASKS[{self.alias!r}]: {problem}", id="fusion_jobs.E050")
            for problem in self.problems
        ]

    def validate_task(self, task: Any) -> None:
        """The framework's rules, plus fusion-jobs' (arguments by name, option values), then register."""
        super().validate_task(task)
        path = task.module_path
        if task.priority != 0 and not int(jobs_settings.MAX_PRIORITY):
            raise InvalidTask(
                f"{path}: priority {task.priority} needs RabbitMQ priority queues: set "
                "FUSION_JOBS_MAX_PRIORITY (e.g. 10), on a vhost whose queues it can declare"
            )
        if not _NAME.match(path):
            raise InvalidTask(f"{path}: fusion-jobs task names are at most 200 characters")
        for key in TASK_OPTIONS:
            problem = _option_problem(key, getattr(task, key, None))
            if problem:
                raise InvalidTask(f"{path}: {problem}")
        self._register(task)

    def _register(self, task: Any) -> FusionJobsTask:
        self._configured()
        name = task.module_path
        known = declared.get(name)
        if known is not None and known.func is task.func:
            return get_task(name)
        options: dict[str, Any] = {"name": name, "queue": task.queue_name}
        for key in TASK_OPTIONS:
            value = getattr(task, key, None)
            if value is None:
                value = self.options.get(key)
            if value is not None:
                options[key] = value
        options["description"] = (inspect.getdoc(task.func) or "").split("\n")[0]
        try:
            registered = fusion_task(**options)(runner(name, task))
        except TaskDeclarationError as exc:
            raise InvalidTask(str(exc)) from None
        if task.priority:
            registered = register(replace(registered, priority=task.priority))
        declared[name] = task
        return registered

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        self.validate_task(task)
        fusion = self._register(task)
        if task.queue_name != fusion.queue:
            # A worker consumes, and accepts messages on, the queue each task was declared with.
            raise InvalidTask(
                f"{task.module_path}: declared on queue {fusion.queue!r}; fusion-jobs runs a task on "
                f"the queue it was declared with, so using(queue_name={task.queue_name!r}) can't move it"
            )
        if task.priority != fusion.priority:
            fusion = replace(fusion, priority=task.priority)
        payload = bind_arguments(task, args, kwargs)
        token = running_inline.set(True)
        try:
            if task.run_after is not None:
                handle = api.enqueue_at(task.run_after, fusion, **payload)
            else:
                handle = api.enqueue(fusion, **payload)
        finally:
            running_inline.reset(token)
        if handle.mode == HANDLE_INLINE:
            # Run already (outside a transaction) or after the commit: the row tells which.
            result = self._get(task, handle.run_id)
            object.__setattr__(result, "args", normalize_json(list(args)))
            object.__setattr__(result, "kwargs", normalize_json(dict(kwargs)))
            if result.status == TaskResultStatus.READY:
                expect_after_commit(handle.run_id)
                task_enqueued.send(sender=type(self), task_result=result)
            return result
        result = TaskResult(
            task=task,
            id=handle.run_id,
            status=TaskResultStatus.READY,
            enqueued_at=timezone.now(),
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=list(args),
            kwargs=dict(kwargs),
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(sender=type(self), task_result=result)
        return result

    def _get(self, task: Any, result_id: str) -> Any:
        row = JobRun.objects.using(db_alias()).filter(pk=result_id).first()
        if row is None:
            raise TaskResultDoesNotExist(result_id)
        return result_of(task, row, self.alias)

    def get_result(self, result_id: str) -> Any:
        try:
            uuid.UUID(str(result_id))
        except ValueError:
            raise TaskResultDoesNotExist(result_id) from None
        row = JobRun.objects.using(db_alias()).filter(pk=result_id).first()
        if row is None:
            raise TaskResultDoesNotExist(result_id)
        task = declared.get(row.task_name)
        if task is None or task.backend != self.alias:
            raise TaskResultDoesNotExist(f"run {result_id} is not a task of the {self.alias!r} backend")
        return result_of(task, row, self.alias)
