"""Plain Dramatiq actors (a django-dramatiq project's ``@dramatiq.actor``) as fusion-jobs tasks.

At start-up (``FusionJobsConfig.ready``) every actor declared on Dramatiq's global broker is
registered as a task under its actor name, with its declaration's options carried over
(:data:`CARRIED`), and its ``send()``/``send_with_options()`` go through
:func:`fusion_jobs.enqueue`: a run row queued at send, the same argument and payload checks,
the outbox and the inline fallback when no broker is configured. The worker runs them as it runs
any task; a message published by plain Dramatiq code (or left on the queue from before the
switch) is accepted with positional arguments, bound to keywords by the function's signature,
and its run is recorded by the worker.

Per-message options are not honoured, except ``delay``: limits (retries, time limit, backoff)
come from the actor's declaration only, so a message cannot lengthen them.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import dramatiq
import dramatiq.broker
from django.apps import apps
from django.conf import settings
from django.core import checks

from .api import enqueue, enqueue_at
from .exceptions import TaskDeclarationError
from .registry import Task, all_tasks, get_task, register, task, unregister

if TYPE_CHECKING:
    from dramatiq import Actor, Broker

logger = logging.getLogger("fusion_jobs")

#: Actor options carried onto the task: Dramatiq's name -> (task option, scale to fusion-jobs' unit).
CARRIED: dict[str, tuple[str, float]] = {
    "max_retries": ("max_retries", 1),
    "time_limit": ("execution_timeout", 0.001),  # milliseconds -> seconds
    "min_backoff": ("min_backoff", 0.001),
    "max_backoff": ("max_backoff", 0.001),
}
#: Per-message options ``send_with_options`` honours; any other is logged and ignored.
HONOURED_SEND_OPTIONS = ("delay",)

#: actor name -> why it could not be adopted, or the options it declares that are not carried.
_skipped: dict[str, str] = {}
_not_carried: dict[str, list[str]] = {}
_warned: set[tuple[str, str]] = set()


def import_actor_modules() -> None:
    """Import the task modules django-dramatiq's ``rundramatiq`` would, with its own discovery.

    django-dramatiq's command honours ``DRAMATIQ_AUTODISCOVER_MODULES``,
    ``DRAMATIQ_IGNORED_MODULES`` and packages of task modules; its discovery is reused as is.
    """
    if not (hasattr(settings, "DRAMATIQ_AUTODISCOVER_MODULES") or apps.is_installed("django_dramatiq")):
        return
    from django_dramatiq.management.commands.rundramatiq import Command  # lazy: optional, only when installed

    Command(stdout=io.StringIO()).discover_tasks_modules()


def _is_adopted(actor: Actor[Any, Any]) -> bool:
    return getattr(actor, "_fusion_jobs_task", None) is not None


def task_options(actor: Actor[Any, Any]) -> dict[str, Any]:
    """The ``@task`` options an actor's declaration carries over (priority apart)."""
    options: dict[str, Any] = {"name": actor.actor_name, "queue": actor.queue_name}
    for name, (option, scale) in CARRIED.items():
        value = actor.options.get(name)
        if value is not None:
            options[option] = value if scale == 1 else value * scale
    return options


def adopt(actor: Actor[Any, Any]) -> Task | None:
    """Register ``actor`` as a task and route its sends through ``enqueue()``; None if it can't be."""
    existing = all_tasks().get(actor.actor_name)
    if existing is not None and existing.fn is not actor.fn:
        same = (existing.fn.__module__, existing.fn.__qualname__) == (
            actor.fn.__module__,
            actor.fn.__qualname__,
        )
        if not same:  # else: the actor the broker declared for a fusion-jobs task
            _skipped[actor.actor_name] = (
                f"the name is already the task of {existing.fn.__module__}.{existing.fn.__qualname__}"
            )
        return None
    try:
        made = task(actor.fn, **task_options(actor))
    except TaskDeclarationError as exc:
        _skipped[actor.actor_name] = str(exc)
        return None
    # Dramatiq runs lower priorities first; Django's scale (the task's) runs higher first.
    made = register(
        dataclasses.replace(made, priority=max(-100, min(100, -int(actor.priority))), binds_positional=True)
    )
    _not_carried[actor.actor_name] = sorted(
        key for key in actor.options if key not in CARRIED and key != "broker"
    )
    actor._fusion_jobs_task = made  # type: ignore[attr-defined]
    actor.send_with_options = functools.partial(send_with_options, actor)  # type: ignore[method-assign]
    return made


def forget(actor_name: str) -> None:
    """Unregister an adopted actor's task and its check notes (tests that adopt throwaway actors)."""
    unregister(actor_name)
    _skipped.pop(actor_name, None)
    _not_carried.pop(actor_name, None)


def adopt_actors(broker: Broker | None = None) -> list[Task]:
    """Adopt every plain actor on ``broker`` (default: Dramatiq's global broker, if one was set)."""
    broker = broker or dramatiq.broker.global_broker
    if broker is None:
        return []  # no @dramatiq.actor was declared: Dramatiq never made a broker
    adopted = []
    for actor in list(broker.actors.values()):
        if _is_adopted(actor):
            adopted.append(actor._fusion_jobs_task)  # type: ignore[attr-defined]
            continue
        made = adopt(actor)
        if made is not None:
            adopted.append(made)
    return adopted


def _warn_once(actor_name: str, option: str) -> None:
    if (actor_name, option) not in _warned:
        _warned.add((actor_name, option))
        logger.warning(
            "%s.send_with_options(%s=...) is ignored: fusion-jobs honours only %s per message; "
            "limits come from the actor's declaration",
            actor_name,
            option,
            ", ".join(HONOURED_SEND_OPTIONS),
        )


def send_with_options(
    actor: Actor[Any, Any],
    *,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    delay: float | None = None,
    **options: Any,
) -> dramatiq.Message[Any]:
    """An adopted actor's ``send_with_options``: ``enqueue()`` (or ``enqueue_at()`` with ``delay`` ms).

    Returns a Dramatiq message whose ``message_id`` is the run's id, as Dramatiq's send does.
    """
    for option in options:
        _warn_once(actor.actor_name, option)
    task_obj = get_task(actor.actor_name)
    keywords = task_obj.bind_positional(args, kwargs or {})
    if delay:
        handle = enqueue_at(timedelta(milliseconds=delay), task_obj, **keywords)
    else:
        handle = enqueue(task_obj, **keywords)
    return dramatiq.Message(
        queue_name=task_obj.effective_queue,
        actor_name=task_obj.name,
        args=(),
        kwargs=keywords,
        options={},
        message_id=str(handle.run_id),
        message_timestamp=int(time.time() * 1000),
    )


@checks.register("fusion_jobs")
def check_actors(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Actors that could not become tasks, and actor options fusion-jobs does not carry over."""
    found: list[checks.CheckMessage] = [
        checks.Warning(
            f"Dramatiq actor {name!r} is not run by fusion-jobs: {why}",
            hint="Give its function keyword parameters (no positional-only ones) and a valid name.",
            obj=name,
            id="fusion_jobs.W021",
        )
        for name, why in sorted(_skipped.items())
    ]
    found += [
        checks.Warning(
            f"Dramatiq actor {name!r} declares option(s) fusion-jobs does not carry over: {', '.join(keys)}.",
            hint=f"Only {', '.join(CARRIED)}, queue_name and priority keep their meaning; "
            "see README 'Coming from django-dramatiq'.",
            obj=name,
            id="fusion_jobs.W020",
        )
        for name, keys in sorted(_not_carried.items())
        if keys
    ]
    return found


__all__ = [
    "CARRIED",
    "HONOURED_SEND_OPTIONS",
    "adopt",
    "adopt_actors",
    "forget",
    "import_actor_modules",
    "send_with_options",
]
