"""The ``@task`` decorator and the task registry.

Declaring a task needs no broker: the registry is a plain dict, and Dramatiq actors are declared
from it when (and only when) the broker backend is built, whatever the import order.
"""

from __future__ import annotations

import difflib
import inspect
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from django.utils.module_loading import autodiscover_modules

from .backends import get_backend
from .conf import PUBLISH_ERROR_POLICIES, jobs_settings
from .exceptions import TaskArgumentsError, TaskDeclarationError, UnknownTaskError
from .utils import parse_duration

if TYPE_CHECKING:
    from .handle import RunHandle

_NAME = re.compile(r"^[A-Za-z0-9<][A-Za-z0-9_.:<>-]{0,199}$")
# Dramatiq's own rule for queue names.
_QUEUE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9._-]*$")

_OPTIONS = {
    "name",
    "execution_timeout",
    "max_retries",
    "queue",
    "min_backoff",
    "max_backoff",
    "single_flight",
    "retry_on_timeout",
    "on_publish_error",
    "description",
}


@dataclass(frozen=True, eq=False)
class Task:
    """A registered task: call it to run the function directly, ``enqueue()`` to run it as a job."""

    fn: Callable[..., Any]
    name: str
    queue: str | None = None
    execution_timeout: float | None = None
    max_retries: int | None = None
    min_backoff: float | None = None
    max_backoff: float | None = None
    single_flight: bool | Callable[..., str] = False
    retry_on_timeout: bool = True
    #: What a failed publish of this task's runs does; None: FUSION_JOBS_ON_PUBLISH_ERROR.
    on_publish_error: str | None = None
    description: str = ""
    #: -100..100 (Django's scale); ordering within a queue when FUSION_JOBS_MAX_PRIORITY is set.
    priority: int = 0
    #: A plain Dramatiq actor (fusion_jobs.dramatiq_actors): its messages may carry positional
    #: arguments, bound to keywords by the function's signature before anything else reads them.
    binds_positional: bool = False
    signature: inspect.Signature = field(init=False, repr=False)
    # What check_arguments() needs from the signature, worked out once: enqueue() is a hot path.
    _accepted: frozenset[str] = field(init=False, repr=False)
    _required: tuple[str, ...] = field(init=False, repr=False)
    _open: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        signature = inspect.signature(self.fn)
        keywords = [
            p
            for p in signature.parameters.values()
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        ]
        object.__setattr__(self, "signature", signature)
        object.__setattr__(self, "_accepted", frozenset(p.name for p in keywords))
        object.__setattr__(
            self, "_required", tuple(p.name for p in keywords if p.default is inspect.Parameter.empty)
        )
        object.__setattr__(
            self,
            "_open",
            any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()),
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def enqueue(self, **kwargs: Any) -> RunHandle:
        """``fusion_jobs.enqueue(self, **kwargs)``, through the backend the settings choose."""
        return get_backend().submit(self, kwargs)

    # Effective values: the task's own, else the setting, read at use time.
    @property
    def effective_queue(self) -> str:
        return self.queue or str(jobs_settings.DEFAULT_QUEUE)

    @property
    def effective_timeout(self) -> float:
        return self.execution_timeout or float(jobs_settings.DEFAULT_EXECUTION_TIMEOUT)

    @property
    def effective_max_retries(self) -> int:
        return self.max_retries if self.max_retries is not None else int(jobs_settings.DEFAULT_MAX_RETRIES)

    def bind_positional(self, args: list[Any] | tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """``args`` and ``kwargs`` as keywords only, by the function's signature (TaskArgumentsError if they don't fit).

        Plain Dramatiq actors are sent as ``add.send(1, 2)``; fusion-jobs stores and runs keywords.
        """
        try:
            bound = self.signature.bind_partial(*args, **kwargs)
        except TypeError as exc:
            raise TaskArgumentsError(f"{self.name}: {exc}") from None
        keywords: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            kind = self.signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                if value:
                    raise TaskArgumentsError(f"{self.name}: *{name} cannot be passed as keywords")
            elif kind is inspect.Parameter.VAR_KEYWORD:
                keywords.update(value)
            else:
                keywords[name] = value
        return keywords

    def check_arguments(self, kwargs: dict[str, Any], *, label: str = "") -> None:
        """Raise TaskArgumentsError when the function cannot be called with ``kwargs``.

        Used by ``enqueue()``, ``enqueue_many()`` and ``ensure_cron()`` so a typo fails at the call,
        not in a worker later; the message starts with ``label`` (default: the task's name).
        """
        missing = [name for name in self._required if name not in kwargs]
        unexpected = [] if self._open else [key for key in kwargs if key not in self._accepted]
        if missing or unexpected:
            raise TaskArgumentsError(f"{label or self.name}: {self._misfit(missing, unexpected)}")

    def _misfit(self, missing: list[str], unexpected: list[str]) -> str:
        parts = []
        for key in unexpected:
            close = difflib.get_close_matches(str(key), sorted(self._accepted), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            parts.append(f"unexpected argument {key!r}{hint}")
            if close and close[0] in missing:
                missing.remove(close[0])
        if missing:
            s = "s" if len(missing) > 1 else ""
            parts.append(f"missing required argument{s} {', '.join(repr(m) for m in missing)}")
        takes = [
            p.name if p.kind is not inspect.Parameter.VAR_KEYWORD else f"**{p.name}"
            for p in self.signature.parameters.values()
            if p.name in self._accepted or p.kind is inspect.Parameter.VAR_KEYWORD
        ]
        return f"{'; '.join(parts)}; it takes {', '.join(takes) or 'no arguments'}"

    def __repr__(self) -> str:
        return f"<Task {self.name!r} queue={self.effective_queue!r}>"


_registry: dict[str, Task] = {}
_lock = threading.Lock()
_listeners: list[Callable[[Task], None]] = []


def _declaration_error(task_name: str, problem: str) -> TaskDeclarationError:
    return TaskDeclarationError(f"task {task_name!r}: {problem}")


def _build(fn: Callable[..., Any], options: dict[str, Any]) -> Task:
    if not callable(fn):
        raise TaskDeclarationError(f"@task must decorate a function, got {fn!r}")
    name = options.get("name") or f"{fn.__module__}.{fn.__qualname__}"
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise _declaration_error(
            name, f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(_OPTIONS))}"
        )
    if not isinstance(name, str) or not _NAME.match(name):
        raise _declaration_error(
            str(name), "names are 1-200 characters of letters, digits, '-', '_', '.', ':'"
        )
    queue = options.get("queue")
    if queue is not None and (
        not isinstance(queue, str) or not _QUEUE.match(queue) or queue.endswith((".DQ", ".XQ"))
    ):
        raise _declaration_error(
            name, f"bad queue name {queue!r}: letters, digits, '.', '_', '-', not starting with a digit"
        )
    timeout = options.get("execution_timeout")
    if timeout is not None:
        try:
            timeout = parse_duration(timeout)
        except ValueError as exc:
            raise _declaration_error(name, f"bad execution_timeout: {exc}") from None
    backoffs: dict[str, float | None] = {}
    for key in ("min_backoff", "max_backoff"):
        value = options.get(key)
        if value is not None:
            try:
                value = parse_duration(value)
            except ValueError as exc:
                raise _declaration_error(name, f"bad {key}: {exc}") from None
        backoffs[key] = value
    max_retries = options.get("max_retries")
    if max_retries is not None and (
        not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0
    ):
        raise _declaration_error(name, f"max_retries must be a whole number >= 0, got {max_retries!r}")
    on_publish_error = options.get("on_publish_error")
    if on_publish_error is not None and on_publish_error not in PUBLISH_ERROR_POLICIES:
        raise _declaration_error(
            name,
            f"on_publish_error must be one of {', '.join(PUBLISH_ERROR_POLICIES)}, got {on_publish_error!r}",
        )
    single_flight = options.get("single_flight", False)
    if not (isinstance(single_flight, bool) or callable(single_flight)):
        raise _declaration_error(name, "single_flight must be True/False or a function returning a key")
    for param in inspect.signature(fn).parameters.values():
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise _declaration_error(
                name, f"parameter {param.name!r} is positional-only; tasks take keywords"
            )
    return Task(
        fn=fn,
        name=name,
        queue=queue,
        execution_timeout=timeout,
        max_retries=max_retries,
        min_backoff=backoffs["min_backoff"],
        max_backoff=backoffs["max_backoff"],
        single_flight=single_flight,
        retry_on_timeout=bool(options.get("retry_on_timeout", True)),
        on_publish_error=on_publish_error,
        description=str(options.get("description") or (inspect.getdoc(fn) or "").split("\n")[0]),
    )


def register(task_obj: Task) -> Task:
    with _lock:
        existing = _registry.get(task_obj.name)
        if existing is not None:
            same_function = (
                existing.fn.__module__ == task_obj.fn.__module__
                and existing.fn.__qualname__ == task_obj.fn.__qualname__
            )
            if not same_function:
                raise _declaration_error(
                    task_obj.name,
                    f"name already used by {existing.fn.__module__}.{existing.fn.__qualname__}",
                )
        _registry[task_obj.name] = task_obj
        listeners = list(_listeners)
    for listener in listeners:
        listener(task_obj)
    return task_obj


@overload
def task(fn: Callable[..., Any], /) -> Task: ...


@overload
def task(fn: None = None, /, **options: Any) -> Callable[[Callable[..., Any]], Task]: ...


def task(
    fn: Callable[..., Any] | None = None, /, **options: Any
) -> Task | Callable[[Callable[..., Any]], Task]:
    """Register a function as a task; usable bare (``@task``) or with options (``@task(name=...)``).

    Options: ``name``, ``execution_timeout`` (seconds, ``"600s"``, ``"10m"`` or a timedelta),
    ``max_retries``, ``queue``, ``min_backoff``/``max_backoff``, ``single_flight`` (True, or a
    function of the task's arguments returning a lock key), ``retry_on_timeout``,
    ``on_publish_error`` (``inline``/``raise``/``outbox``: this task's runs, over the setting),
    ``description``. Problems raise TaskDeclarationError at import, naming the task.
    """
    if fn is not None:
        return register(_build(fn, options))

    def decorator(func: Callable[..., Any]) -> Task:
        return register(_build(func, options))

    return decorator


def get_task(name_or_task: str | Task) -> Task:
    if isinstance(name_or_task, Task):
        return name_or_task
    try:
        return _registry[name_or_task]
    except (KeyError, TypeError):
        pass
    # A Django Tasks framework Task that fusion_jobs.backends.django_tasks registered: by its path.
    path = getattr(name_or_task, "module_path", None)
    if isinstance(path, str) and path in _registry:
        return _registry[path]
    # A Dramatiq actor that fusion_jobs.dramatiq_actors adopted: by its actor name.
    actor_name = getattr(name_or_task, "actor_name", None)
    if isinstance(actor_name, str) and actor_name in _registry:
        return _registry[actor_name]
    if not isinstance(name_or_task, str):
        raise UnknownTaskError(f"expected a task or a task name, got {type(name_or_task).__name__}")
    close = difflib.get_close_matches(name_or_task, list(_registry), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownTaskError(f"no task named {name_or_task!r} is registered{hint}")


def all_tasks() -> dict[str, Task]:
    with _lock:
        return dict(_registry)


def on_register(listener: Callable[[Task], None]) -> None:
    """Call ``listener`` for every task registered from now on (the broker declares actors so)."""
    with _lock:
        _listeners.append(listener)


def unregister(name: str) -> None:
    """Forget a task (tests that declare throwaway tasks)."""
    with _lock:
        _registry.pop(name, None)


def autodiscover() -> None:
    """Import ``<app>.tasks`` (see FUSION_JOBS_TASK_MODULES) for every installed app."""
    for module_name in jobs_settings.TASK_MODULES:
        autodiscover_modules(module_name)


__all__ = ["Task", "all_tasks", "autodiscover", "get_task", "task"]
