"""``ensure_cron`` and ``delete_cron``: schedules declared in code or created at runtime.

A schedule has one of two origins, and the origin decides its lifetime:

* **declared**: ``ensure_cron`` called by a registrar: a function listed in
  ``FUSION_JOBS_CRON_REGISTRARS``, ``register_crons()`` in an app's ``crons`` module (with
  ``FUSION_JOBS_CRON_AUTODISCOVER``, on by default) and the built-in maintenance crons.
  ``runcrons`` calls them all at start-up (:func:`load_declarations`), then marks every declared schedule no registrar declared again as orphaned
  (:func:`mark_orphans`): it stops firing and stays visible, never deleted.
* **runtime**: ``ensure_cron`` called anywhere else (a view, a shell, a data migration), or the
  admin. No start-up touches it: it fires until :func:`delete_cron` or the admin deletes it.

The origin comes from where the call runs, not from an argument: inside :func:`load_declarations`
it is declared, elsewhere runtime. A runtime call on a name a registrar declares updates it but
leaves it declared (the code still owns it); a registrar taking over a runtime name makes it
declared.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.db import transaction
from django.utils import timezone as dj_timezone
from django.utils.module_loading import import_string, module_has_submodule

from ..conf import jobs_settings
from ..exceptions import CronError, PayloadError
from ..registry import Task, get_task
from ..utils import json_roundtrip
from .crontab import ZonedCron, normalise_expression

if TYPE_CHECKING:
    from ..models import CronSchedule

logger = logging.getLogger("fusion_jobs.crons")

MISFIRE_POLICIES = ("latest", "all", "skip")
# CronOrigin's values (fusion_jobs.models is not importable before Django's apps are ready).
DECLARED, RUNTIME = "declared", "runtime"
INPUT_MAX_BYTES = 256 * 1024
EXPRESSION_MAX_CHARS = 120  # CronSchedule.expression's column

_declared: set[str] = set()
_declared_lock = threading.Lock()
_declaring: ContextVar[bool] = ContextVar("fusion_jobs_cron_declaring", default=False)


def declared_names() -> set[str]:
    """Names registrars passed to ``ensure_cron`` in this process (the declared schedules ``runcrons`` keeps)."""
    with _declared_lock:
        return set(_declared)


@contextmanager
def declaring() -> Iterator[None]:
    """Mark the ``ensure_cron`` calls made inside as declarations (registrars run inside it)."""
    token = _declaring.set(True)
    try:
        yield
    finally:
        _declaring.reset(token)


def cron_trigger(expr: str, tz: str) -> ZonedCron:
    """The ticks of a five-field crontab expression in ``tz``; CronError if either is bad.

    The standard-library ``ZonedCron``, not APScheduler's trigger: ``import fusion_jobs`` stays light.
    """
    return ZonedCron(expr, tz)


def ensure_cron(
    task_or_name: Task | str,
    name: str,
    expr: str,
    input: dict[str, Any] | None = None,
    *,
    timezone: str = "UTC",
    misfire: str = "latest",
    max_lateness: float | None = None,
    enabled: bool = True,
) -> CronSchedule:
    """Create or update the schedule ``name``; the same arguments again change nothing.

    The next fire time is kept when nothing that decides it changed, so a restart neither
    resets nor skips the schedule (missed ticks then follow ``misfire``). A paused schedule stays
    paused. A bad expression or timezone, an unknown task, input that is not a JSON object or
    does not fit the task's arguments: each raises here, at the declaration, not at 3 a.m.
    Called by a registrar the schedule is *declared*, from anywhere else *runtime* (module
    docstring); a running ``runcrons`` picks either up at its next poll.
    """
    from ..models import CronSchedule  # lazy: models need the app registry, import fusion_jobs comes first

    task_obj = get_task(task_or_name)
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise CronError(f"bad cron name {name!r}: 1-200 characters")
    if misfire not in MISFIRE_POLICIES:
        raise CronError(
            f"cron {name!r}: misfire must be one of {', '.join(MISFIRE_POLICIES)}, got {misfire!r}"
        )
    if max_lateness is not None and (
        isinstance(max_lateness, bool) or not isinstance(max_lateness, int | float) or max_lateness <= 0
    ):
        raise CronError(f"cron {name!r}: max_lateness must be a positive number of seconds")
    expression = normalise_expression(expr)
    if len(expression) > EXPRESSION_MAX_CHARS:
        raise CronError(
            f"cron {name!r}: expression {expression!r} is {len(expression)} characters, at most "
            f"{EXPRESSION_MAX_CHARS} characters are stored (use ranges and steps, e.g. '*/5')"
        )
    trigger = cron_trigger(expression, timezone)
    now = dj_timezone.now()
    first = trigger.next_at_or_after(now)
    if first is None:
        raise CronError(f"cron {name!r}: expression {expr!r} never fires")
    payload = check_input(task_obj, name, input)

    wanted = {
        "task_name": task_obj.name,
        "expression": expression,
        "timezone": trigger.timezone_name,  # a ZoneInfo is stored (and compared) by its name
        "input": payload,
        "misfire": misfire,
        "max_lateness": float(max_lateness) if max_lateness is not None else None,
        "enabled": bool(enabled),
        "orphaned": False,
    }
    declared = _declaring.get()
    if declared:
        with _declared_lock:
            _declared.add(name)
    with transaction.atomic():
        schedule = CronSchedule.objects.select_for_update().filter(name=name).first()
        if schedule is None:
            schedule, created = CronSchedule.objects.get_or_create(
                name=name,
                defaults={**wanted, "origin": DECLARED if declared else RUNTIME, "next_fire_at": first},
            )
            if created:
                return schedule
        if declared:
            wanted["origin"] = DECLARED  # a registrar takes the name over
        elif schedule.origin != DECLARED or schedule.orphaned:
            wanted["origin"] = RUNTIME  # a declared one stays declared while its registrar declares it
        changed = {key: value for key, value in wanted.items() if getattr(schedule, key) != value}
        if not changed:
            return schedule
        # A new expression or timezone, or a schedule coming back (re-enabled, declared again):
        # start from the next tick, instead of treating the time it was off as missed ticks.
        restart = bool({"expression", "timezone"} & set(changed)) or schedule.next_fire_at is None
        restart = restart or changed.get("enabled") is True or ("orphaned" in changed)
        for key, value in changed.items():
            setattr(schedule, key, value)
        fields = list(changed)
        if restart:
            schedule.next_fire_at = first
            fields.append("next_fire_at")
        schedule.save(update_fields=[*fields, "updated_at"])
    logger.info("cron %s updated: %s", name, ", ".join(sorted(changed)))
    return schedule


def check_input(task_obj: Task, name: str, input: Any) -> dict[str, Any]:
    """The schedule's input as it will be stored: a JSON object that fits the task's arguments."""
    if input is not None and not isinstance(input, dict):
        raise PayloadError(
            f"cron {name!r}: input must be a dict of keyword arguments, got {type(input).__name__}"
        )
    payload, _ = json_roundtrip(dict(input or {}), task_name=f"cron {name!r}", max_bytes=INPUT_MAX_BYTES)
    # TaskArgumentsError, as from enqueue(): the input would fail every tick.
    task_obj.check_arguments(payload, label=f"cron {name!r} (task {task_obj.name!r})")
    return dict(payload)


def delete_cron(name: str) -> bool:
    """Delete the runtime schedule ``name``; False when there is none (calling it twice is fine).

    Its past runs stay in the history, unlinked. A schedule a registrar declares is refused
    (CronError): the next ``runcrons`` start would declare it again; remove it from the code and
    it is orphaned, after which it can be deleted here. A running ``runcrons`` stops firing it at
    its next poll.
    """
    from ..models import CronSchedule  # lazy: models need the app registry, import fusion_jobs comes first

    schedule = CronSchedule.objects.filter(name=name).first()
    if schedule is None:
        return False
    if schedule.origin == DECLARED and not schedule.orphaned:
        raise CronError(
            f"cron {name!r} is declared in code by a registrar: remove it there (it is then orphaned at "
            "the next runcrons start), or pause it"
        )
    deleted, _ = CronSchedule.objects.filter(pk=schedule.pk).delete()
    if deleted:
        logger.info("cron %s deleted", name)
    return bool(deleted)


# --- Declarations at start-up -----------------------------------------------------------------


@dataclass
class Declarations:
    """What :func:`load_declarations` ran, and what failed (a failure blocks orphan marking)."""

    sources: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


#: Declares the built-in maintenance crons (prune, sweep) unless their settings turn them off.
MAINTENANCE_REGISTRAR = "fusion_jobs.tasks.register_maintenance_crons"


def registrar_paths() -> list[str]:
    """Where ``runcrons`` finds its registrars, in call order: the maintenance crons',
    ``FUSION_JOBS_CRON_REGISTRARS``, then (``FUSION_JOBS_CRON_AUTODISCOVER``) the
    ``register_crons`` of every installed app that has a ``crons`` module.
    """
    paths = [MAINTENANCE_REGISTRAR, *map(str, jobs_settings.CRON_REGISTRARS or ())]
    if jobs_settings.CRON_AUTODISCOVER:
        for config in apps.get_app_configs():
            has_crons = config.module is not None and module_has_submodule(config.module, "crons")
            if has_crons and hasattr(import_module(f"{config.name}.crons"), "register_crons"):
                paths.append(f"{config.name}.crons.register_crons")
    return paths


def load_declarations() -> Declarations:
    """Call every registrar (:func:`registrar_paths`) once.

    A function reached twice (listed twice, or listed and autodiscovered) runs once. A registrar
    that fails is reported, not raised, so the others' crons are still declared.
    """
    result = Declarations()
    seen: set[int] = set()
    try:
        paths = registrar_paths()
    except Exception as exc:  # an app's crons module that fails to import
        logger.exception("cron registrars could not be listed")
        result.errors.append(f"crons autodiscovery: {type(exc).__name__}: {exc}")
        paths = [MAINTENANCE_REGISTRAR, *map(str, jobs_settings.CRON_REGISTRARS or ())]
    for source in paths:
        try:
            function = import_string(source)
            if id(function) in seen:
                continue
            seen.add(id(function))
            with declaring():
                function()
            result.sources.append(source)
        except Exception as exc:
            logger.exception("cron registrar %s failed", source)
            result.errors.append(f"{source}: {type(exc).__name__}: {exc}")
    return result


def mark_orphans(declared: set[str]) -> list[str]:
    """Mark declared schedules not in ``declared`` as orphaned (they stop firing); return their names.

    Runtime schedules are never orphaned: no registrar declares them.
    """
    from ..models import CronSchedule  # lazy: models need the app registry, import fusion_jobs comes first

    stale = CronSchedule.objects.filter(orphaned=False, origin=DECLARED).exclude(name__in=declared)
    names = sorted(stale.values_list("name", flat=True))
    if names:
        CronSchedule.objects.filter(name__in=names).update(orphaned=True, updated_at=dj_timezone.now())
        logger.warning("cron schedule(s) no longer declared in code, marked orphaned: %s", ", ".join(names))
    return names
