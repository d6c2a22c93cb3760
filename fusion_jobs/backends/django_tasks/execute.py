"""One attempt of a Django task, on a worker or inline: the framework's signals, context and result."""

from __future__ import annotations

import sys
import traceback
from collections import OrderedDict
from contextvars import ContextVar
from dataclasses import replace
from typing import Any

from django.utils import timezone

from ...context import current
from ...exceptions import TaskArgumentsError
from ...models import JobRun, RunMode
from ...recording import db_alias
from ...registry import get_task
from .arguments import call_arguments, call_signature, stored_signature
from .framework import (
    TaskContext,
    TaskError,
    TaskResultStatus,
    normalize_json,
    task_enqueued,
    task_finished,
    task_started,
)
from .results import result_of, running_result

# Set while enqueue() may run a task inline at once (outside a transaction): that attempt is inline.
running_inline: ContextVar[bool] = ContextVar("fusion_jobs_django_task_inline", default=False)
# Inline runs waiting for the caller's commit (bounded: a rolled-back one never comes to pop itself).
_pending_inline: OrderedDict[str, bool] = OrderedDict()
_PENDING_LIMIT = 10_000


def expect_after_commit(run_id: str) -> None:
    """Note an inline run that starts when the caller's transaction commits (its attempt is inline)."""
    _pending_inline[run_id] = True
    while len(_pending_inline) > _PENDING_LIMIT:
        _pending_inline.popitem(last=False)


# module_path -> the Django Task first registered under it (decorator-time options).
declared: dict[str, Any] = {}


def _timed_out(exc: BaseException) -> bool:
    # dramatiq is only loaded on a worker: look it up rather than import it in a web process.
    time_limit = sys.modules.get("dramatiq.middleware.time_limit")
    return time_limit is not None and isinstance(exc, time_limit.TimeLimitExceeded)


def _exit_as_exception(exc: SystemExit) -> Exception:
    """``SystemExit`` as an Exception of the same name, so it is recorded like any task failure
    (``builtins.SystemExit`` in ``errors``) instead of stopping the process or the worker thread."""
    error_class = type("SystemExit", (Exception,), {"__module__": "builtins", "__qualname__": "SystemExit"})
    return error_class(*exc.args)


def needs_row(django_task: Any) -> bool:
    """Whether this attempt must read its run: for a context, or for a project's signal receivers.

    Each signal has one receiver of the framework's own (its log line), which needs only the
    id, path and status; reading the row for it would cost a query per run on the worker.
    """
    return bool(django_task.takes_context) or any(
        len(signal.receivers) > 1 for signal in (task_enqueued, task_started, task_finished)
    )


def _execute(name: str, kwargs: dict[str, Any]) -> Any:
    """One attempt of a Django task, on a worker or inline: signals, context, async, return value."""
    django_task = declared[name]
    fusion = get_task(name)
    ctx = current()
    if ctx is None:  # called outside a run (the registered function called directly)
        positional, keywords = call_arguments(call_signature(django_task.func, False), kwargs)
        return django_task.call(*positional, **keywords)
    backend = django_task.get_backend()
    sender = type(backend)
    row = JobRun.objects.using(db_alias()).get(pk=ctx.attempt.run_id) if needs_row(django_task) else None
    if row is None:
        task_result = running_result(django_task, ctx.attempt, kwargs, backend.alias)
    else:
        task_result = result_of(django_task, row, backend.alias)
    immediate = running_inline.get()
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
        positional, keywords = call_arguments(
            call_signature(django_task.func, django_task.takes_context), kwargs
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


def runner(name: str, django_task: Any) -> Any:
    """The function registered with fusion-jobs for a Django task: its name, its call signature."""

    def run(**kwargs: Any) -> Any:
        return _execute(name, kwargs)

    func = django_task.func
    run.__module__ = func.__module__
    run.__qualname__ = func.__qualname__
    run.__name__ = func.__name__
    run.__doc__ = func.__doc__
    run.__signature__ = stored_signature(call_signature(func, django_task.takes_context))  # type: ignore[attr-defined]
    return run
