"""Each user's own digest time: a runtime schedule per user, next to the six declared crons.

``agent-digest-briefing`` (declared, 07:30 in the project's zone) queues the briefing of every user
who chose no time. A user who picks a time and zone gets the runtime schedule
``agent-digest-user-<id>``: created with ``ensure_cron`` from the settings page, fired by the
running ``runcrons`` within a poll, kept across restarts, removed with ``delete_cron``.
"""

from __future__ import annotations

from datetime import time
from typing import Any

import fusion_jobs
from fusion_jobs.models import CronSchedule

DIGEST_TASK = "agent-user-digest-tick"
PREFIX = "agent-digest-user-"


def schedule_name(user_id: int) -> str:
    return f"{PREFIX}{user_id}"


def user_digest(user: Any) -> CronSchedule | None:
    """The user's own digest schedule, or None (the shared 07:30 briefing covers them)."""
    return CronSchedule.objects.filter(name=schedule_name(user.pk)).first()


def set_user_digest(user: Any, at: time, zone: str) -> CronSchedule:
    """Send ``user``'s briefing daily at ``at`` in ``zone`` (an IANA name); CronError for an unknown zone."""
    return fusion_jobs.ensure_cron(
        DIGEST_TASK,
        schedule_name(user.pk),
        f"{at.minute} {at.hour} * * *",
        {"user_id": user.pk, "timezone": zone},
        timezone=zone,
    )


def clear_user_digest(user: Any) -> bool:
    """Back to the shared briefing; False when the user had no time of their own."""
    return fusion_jobs.delete_cron(schedule_name(user.pk))


def users_with_their_own_time() -> set[int]:
    """Who the shared briefing leaves out: one briefing a day per user, whichever cron sends it."""
    rows = CronSchedule.objects.filter(name__startswith=PREFIX, task_name=DIGEST_TASK).values_list(
        "input", flat=True
    )
    return {int(row["user_id"]) for row in rows if isinstance(row, dict) and "user_id" in row}
