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

from __future__ import annotations

import functools
import inspect
import re
import sys
import traceback
import uuid
from collections import OrderedDict
from contextvars import ContextVar
from dataclasses import dataclass, replace
from importlib import import_module
from importlib.util import find_spec
from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .. import api
from ..conf import PUBLISH_ERROR_POLICIES, jobs_settings
from ..context import current
from ..exceptions import PayloadError, TaskArgumentsError, TaskDeclarationError
from ..models import JobRun, RunMode, RunStatus
from ..recording import Attempt, db_alias, worker_id
from ..registry import Task as FusionJobsTask
from ..registry import get_task, register
from ..registry import task as fusion_task
from ..utils import parse_duration


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

#: How each run status reads in the framework (README: "Django's Tasks framework").
STATUS_MAP: dict[str, str] = {
    RunStatus.QUEUED: "READY",
    RunStatus.RUNNING: "RUNNING",
    RunStatus.RETRYING: "READY",  # "ready to be executed again", in Django's words
    RunStatus.SUCCEEDED: "SUCCESSFUL",
    RunStatus.FAILED: "FAILED",
    RunStatus.TIMED_OUT: "FAILED",
    RunStatus.CANCELLED: "FAILED",
    RunStatus.SKIPPED: "FAILED",  # "unable to start": single-flight, a stale cron tick
}

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
_QUEUE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9._-]*$")


class TaskPayloadError(PayloadError, TypeError):
    """A Django task's arguments are not JSON (a PayloadError, and the TypeError Django raises)."""


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


# Set while enqueue() may run a task inline at once (outside a transaction): that attempt is inline.
_running_inline: ContextVar[bool] = ContextVar("fusion_jobs_django_task_inline", default=False)
# Inline runs waiting for the caller's commit (bounded: a rolled-back one never comes to pop itself).
_pending_inline: OrderedDict[str, bool] = OrderedDict()
_PENDING_LIMIT = 10_000

# module_path -> the Django Task first registered under it (decorator-time options).
_django_tasks: dict[str, Any] = {}


@functools.lru_cache(maxsize=4096)
def _call_signature(func: Any, takes_context: bool) -> inspect.Signature:
    """The function's signature as callers see it: without the ``context`` a context task takes."""
    signature = inspect.signature(func)
    if takes_context:
        signature = signature.replace(parameters=list(signature.parameters.values())[1:])
    return signature


def _stored_signature(signature: inspect.Signature) -> inspect.Signature:
    """How the arguments are stored (by name, as every fusion-jobs run): all keyword-only.

    ``*args`` is stored as a list under its own name; positional-only parameters under theirs.
    This is the signature fusion-jobs checks a run's arguments against.
    """
    params = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in signature.parameters.values()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    params += [
        inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=())
        for p in signature.parameters.values()
        if p.kind is inspect.Parameter.VAR_POSITIONAL
    ]
    params += [p for p in signature.parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD]
    return signature.replace(parameters=params)


def _call_arguments(signature: inspect.Signature, stored: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """The positional and keyword arguments to call the function with, from the stored ones."""
    positional: list[Any] = []
    keywords = dict(stored)
    in_order = True  # parameters are passed positionally while none before them was left out
    for param in signature.parameters.values():
        if param.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            if in_order and param.name in keywords:
                positional.append(keywords.pop(param.name))
            else:
                in_order = False
        elif param.kind is inspect.Parameter.VAR_POSITIONAL:
            extra = keywords.pop(param.name, [])
            if not isinstance(extra, list):
                raise TaskArgumentsError(
                    f"*{param.name} must be stored as a list, got {type(extra).__name__}"
                )
            positional.extend(extra)
    return positional, keywords


def _class_path(error: str, trace: str) -> str:
    """``module.Class`` of a recorded exception: the traceback's last line names it fully."""
    lines = [line for line in trace.strip().splitlines() if line and not line.startswith(" ")]
    head = (lines[-1] if lines else error).split(":", 1)[0].strip()
    if not head or " " in head:
        head = error.split(":", 1)[0].strip() or "Exception"
    return head if "." in head else f"builtins.{head}"


def _timed_out(exc: BaseException) -> bool:
    # dramatiq is only loaded on a worker: look it up rather than import it in a web process.
    time_limit = sys.modules.get("dramatiq.middleware.time_limit")
    return time_limit is not None and isinstance(exc, time_limit.TimeLimitExceeded)


def _result(task: Any, row: JobRun, alias: str) -> Any:
    """The framework's view of a run: status, times, errors, workers and return value from the row."""
    log = [entry for entry in (row.attempt_log or []) if isinstance(entry, dict)]
    worker_ids = [str(entry.get("worker") or "") for entry in log]
    if row.attempts > len(log) and row.status not in (RunStatus.QUEUED, RunStatus.RETRYING):
        worker_ids.append(row.worker)
    errors = [
        TaskError(
            exception_class_path=_class_path(str(entry.get("error") or ""), ""),
            traceback=str(entry.get("error") or ""),
        )
        for entry in log
        if entry.get("outcome") in ("failed", "timed_out") and entry.get("error")
    ]
    if row.status in (RunStatus.FAILED, RunStatus.TIMED_OUT) and row.error:
        errors.append(
            TaskError(
                exception_class_path=_class_path(row.error, row.traceback),
                traceback=row.traceback or row.error,
            )
        )
    first_start = log[0].get("started_at") if log else None
    result = TaskResult(
        task=task,
        id=str(row.pk),
        status=TaskResultStatus(STATUS_MAP.get(str(row.status), "FAILED")),
        enqueued_at=row.enqueued_at,
        started_at=_parse_time(first_start) or row.started_at,
        finished_at=row.finished_at,
        last_attempted_at=row.started_at,
        args=[],
        kwargs=dict(row.kwargs or {}),
        backend=alias,
        errors=errors,
        worker_ids=worker_ids,
    )
    if row.status == RunStatus.SUCCEEDED:
        object.__setattr__(result, "_return_value", row.result)
    return result


def _parse_time(value: Any) -> Any:
    return parse_datetime(value) if isinstance(value, str) else None


def _exit_as_exception(exc: SystemExit) -> Exception:
    """``SystemExit`` as an Exception of the same name, so it is recorded like any task failure
    (``builtins.SystemExit`` in ``errors``) instead of stopping the process or the worker thread."""
    error_class = type("SystemExit", (Exception,), {"__module__": "builtins", "__qualname__": "SystemExit"})
    return error_class(*exc.args)


def _needs_row(django_task: Any) -> bool:
    """Whether this attempt must read its run: for a context, or for a project's signal receivers.

    Each signal has one receiver of the framework's own (its log line), which needs only the
    id, path and status; reading the row for it would cost a query per run on the worker.
    """
    return bool(django_task.takes_context) or any(
        len(signal.receivers) > 1 for signal in (task_enqueued, task_started, task_finished)
    )


def _running_result(django_task: Any, attempt: Attempt, kwargs: dict[str, Any], alias: str) -> Any:
    """A RUNNING result from what the attempt knows, without a query (times and past workers unread)."""
    now = timezone.now()
    return TaskResult(
        task=django_task,
        id=attempt.run_id,
        status=TaskResultStatus.RUNNING,
        enqueued_at=None,
        started_at=now,
        finished_at=None,
        last_attempted_at=now,
        args=[],
        kwargs=kwargs,
        backend=alias,
        errors=[],
        worker_ids=[""] * (attempt.attempt - 1) + [worker_id()],
    )


def _execute(name: str, kwargs: dict[str, Any]) -> Any:
    """One attempt of a Django task, on a worker or inline: signals, context, async, return value."""
    django_task = _django_tasks[name]
    fusion = get_task(name)
    ctx = current()
    if ctx is None:  # called outside a run (the registered function called directly)
        positional, keywords = _call_arguments(_call_signature(django_task.func, False), kwargs)
        return django_task.call(*positional, **keywords)
    backend = django_task.get_backend()
    sender = type(backend)
    row = JobRun.objects.using(db_alias()).get(pk=ctx.attempt.run_id) if _needs_row(django_task) else None
    if row is None:
        task_result = _running_result(django_task, ctx.attempt, kwargs, backend.alias)
    else:
        task_result = _result(django_task, row, backend.alias)
    immediate = _running_inline.get()
    inline = (
        immediate
        or _pending_inline.pop(ctx.attempt.run_id, False)
        or (row is not None and row.mode == RunMode.INLINE)
    )
    if immediate and ctx.attempt.attempt == 1:
        # Inline, the run happens inside enqueue(): the framework's order is enqueued, started.
        ready = replace(
            task_result,
            status=TaskResultStatus.READY,
            started_at=None,
            last_attempted_at=None,
            worker_ids=[],
        )
        task_enqueued.send(sender=sender, task_result=ready)
    task_started.send(sender=sender, task_result=task_result)
    try:
        positional, keywords = _call_arguments(
            _call_signature(django_task.func, django_task.takes_context), kwargs
        )
        if django_task.takes_context:
            positional.insert(0, TaskContext(task_result=task_result))
        value = django_task.call(*positional, **keywords)
        value = normalize_json(value)
    except KeyboardInterrupt:
        raise  # the user stopping the process, as Django's ImmediateBackend lets it through
    except BaseException as exc:
        timed_out = _timed_out(exc)
        retryable = not isinstance(exc, TaskArgumentsError) and (not timed_out or fusion.retry_on_timeout)
        final = inline or not retryable or ctx.attempt.retries_done >= fusion.effective_max_retries
        if final:
            task_result.errors.append(
                TaskError(
                    exception_class_path=f"{type(exc).__module__}.{type(exc).__qualname__}",
                    traceback="".join(traceback.format_exception(exc)),
                )
            )
            object.__setattr__(task_result, "status", TaskResultStatus.FAILED)
            object.__setattr__(task_result, "finished_at", timezone.now())
            task_finished.send(sender=sender, task_result=task_result)
        if isinstance(exc, SystemExit):
            # A failure of the task, not of the process: recorded as such, inline and on a worker.
            raise _exit_as_exception(exc).with_traceback(exc.__traceback__) from None
        raise
    object.__setattr__(task_result, "status", TaskResultStatus.SUCCESSFUL)
    object.__setattr__(task_result, "finished_at", timezone.now())
    object.__setattr__(task_result, "_return_value", value)
    task_finished.send(sender=sender, task_result=task_result)
    return value


def _runner(name: str, django_task: Any) -> Any:
    """The function registered with fusion-jobs for a Django task: its name, its call signature."""

    def run(**kwargs: Any) -> Any:
        return _execute(name, kwargs)

    func = django_task.func
    run.__module__ = func.__module__
    run.__qualname__ = func.__qualname__
    run.__name__ = func.__name__
    run.__doc__ = func.__doc__
    run.__signature__ = _stored_signature(_call_signature(func, django_task.takes_context))  # type: ignore[attr-defined]
    return run


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
        known = _django_tasks.get(name)
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
            registered = fusion_task(**options)(_runner(name, task))
        except TaskDeclarationError as exc:
            raise InvalidTask(str(exc)) from None
        if task.priority:
            registered = register(replace(registered, priority=task.priority))
        _django_tasks[name] = task
        return registered

    def _arguments(self, task: Any, args: Any, kwargs: Any) -> dict[str, Any]:
        """Bind to the signature by name (TaskArgumentsError), then Django's JSON normalisation."""
        signature = _call_signature(task.func, task.takes_context)
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TaskArgumentsError(f"{task.module_path}: {exc}") from None
        payload: dict[str, Any] = {}
        named = set(signature.parameters)
        for param_name, value in bound.arguments.items():
            kind = signature.parameters[param_name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                clash = sorted(set(value) & named)
                if clash:
                    raise TaskArgumentsError(
                        f"{task.module_path}: keyword argument(s) {', '.join(map(repr, clash))} in "
                        f"**{param_name} share a parameter's name, and arguments are stored by name"
                    )
                payload.update(value)
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                payload[param_name] = list(value)
            else:
                payload[param_name] = value
        try:
            normalized: dict[str, Any] = normalize_json(payload)
        except (TypeError, ValueError) as exc:
            raise TaskPayloadError(f"{task.module_path}: arguments are not JSON: {exc}") from None
        return normalized

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
        payload = self._arguments(task, args, kwargs)
        token = _running_inline.set(True)
        try:
            if task.run_after is not None:
                handle = api.enqueue_at(task.run_after, fusion, **payload)
            else:
                handle = api.enqueue(fusion, **payload)
        finally:
            _running_inline.reset(token)
        if handle.mode == "inline":
            # Run already (outside a transaction) or after the commit: the row tells which.
            result = self._get(task, handle.run_id)
            object.__setattr__(result, "args", normalize_json(list(args)))
            object.__setattr__(result, "kwargs", normalize_json(dict(kwargs)))
            if result.status == TaskResultStatus.READY:
                _pending_inline[handle.run_id] = True
                while len(_pending_inline) > _PENDING_LIMIT:
                    _pending_inline.popitem(last=False)
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
        return _result(task, row, self.alias)

    def get_result(self, result_id: str) -> Any:
        try:
            uuid.UUID(str(result_id))
        except ValueError:
            raise TaskResultDoesNotExist(result_id) from None
        row = JobRun.objects.using(db_alias()).filter(pk=result_id).first()
        if row is None:
            raise TaskResultDoesNotExist(result_id)
        task = _django_tasks.get(row.task_name)
        if task is None or task.backend != self.alias:
            raise TaskResultDoesNotExist(f"run {result_id} is not a task of the {self.alias!r} backend")
        return _result(task, row, self.alias)


__all__ = ["FRAMEWORK", "STATUS_MAP", "FusionJobsBackend", "FusionTask", "TaskPayloadError"]
