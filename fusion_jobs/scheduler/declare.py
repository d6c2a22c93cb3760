"""``ensure_cron``: declare a schedule in code, idempotently (the seed's ``ensureCron``)."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..exceptions import CronError
from ..registry import Task, get_task
from ..utils import json_roundtrip

if TYPE_CHECKING:
    from ..models import CronSchedule

MISFIRE_POLICIES = ("latest", "all", "skip")

_declared: set[str] = set()
_declared_lock = threading.Lock()


def declared_names() -> set[str]:
    """Names passed to ``ensure_cron`` in this process (what ``runcrons`` keeps; the rest is orphaned)."""
    with _declared_lock:
        return set(_declared)


def cron_trigger(expr: str, tz: str) -> Any:
    """An APScheduler CronTrigger for a five-field crontab expression in ``tz``; CronError if bad."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from apscheduler.triggers.cron import CronTrigger

    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise CronError(
            f"unknown timezone {tz!r} (use an IANA name such as 'UTC' or 'Europe/Berlin')"
        ) from None
    if not isinstance(expr, str) or len(expr.split()) != 5:
        raise CronError(f"bad cron expression {expr!r}: expected five fields 'minute hour day month weekday'")
    try:
        return CronTrigger.from_crontab(expr, timezone=zone)
    except ValueError as exc:
        raise CronError(f"bad cron expression {expr!r}: {exc}") from None


def next_fire_after(expr: str, tz: str, after: datetime) -> datetime | None:
    trigger = cron_trigger(expr, tz)
    fire: datetime | None = trigger.get_next_fire_time(None, after)
    return fire


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
    resets nor skips the schedule. A paused schedule stays paused. Bad arguments raise here.
    """
    from django.db import transaction
    from django.utils import timezone as dj_timezone

    from ..models import CronSchedule

    task_obj = get_task(task_or_name)
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise CronError(f"bad cron name {name!r}: 1-200 characters")
    if misfire not in MISFIRE_POLICIES:
        raise CronError(
            f"cron {name!r}: misfire must be one of {', '.join(MISFIRE_POLICIES)}, got {misfire!r}"
        )
    if max_lateness is not None and (not isinstance(max_lateness, int | float) or max_lateness <= 0):
        raise CronError(f"cron {name!r}: max_lateness must be a positive number of seconds")
    cron_trigger(expr, timezone)
    payload, _ = json_roundtrip(dict(input or {}), task_name=f"cron {name!r}", max_bytes=256 * 1024)

    wanted = {
        "task_name": task_obj.name,
        "expression": expr,
        "timezone": timezone,
        "input": payload,
        "misfire": misfire,
        "max_lateness": float(max_lateness) if max_lateness is not None else None,
        "enabled": bool(enabled),
        "orphaned": False,
    }
    with _declared_lock:
        _declared.add(name)
    now = dj_timezone.now()
    with transaction.atomic():
        schedule = CronSchedule.objects.select_for_update().filter(name=name).first()
        if schedule is None:
            schedule, created = CronSchedule.objects.get_or_create(
                name=name, defaults={**wanted, "next_fire_at": next_fire_after(expr, timezone, now)}
            )
            if created:
                return schedule
        changed = {key: value for key, value in wanted.items() if getattr(schedule, key) != value}
        if not changed:
            return schedule
        for key, value in changed.items():
            setattr(schedule, key, value)
        fields = list(changed)
        if {"expression", "timezone"} & set(changed) or schedule.next_fire_at is None:
            schedule.next_fire_at = next_fire_after(expr, timezone, now)
            fields.append("next_fire_at")
        schedule.save(update_fields=[*fields, "updated_at"])
    return schedule
