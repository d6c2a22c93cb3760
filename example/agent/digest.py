"""The daily briefing: per user, what happened in the last day, queued as one outbox message."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.contrib.auth import get_user_model
from django.utils import timezone

from example.documents.models import Document, DocumentStatus

from . import conf
from .delivery import queue_message
from .models import Memory, MessageKind, OutboundMessage
from .schedules import users_with_their_own_time

logger = logging.getLogger(__name__)

MAX_ITEMS = 20


@dataclass
class Briefing:
    ready: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    notifications: list[str] = field(default_factory=list)
    noticed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.ready or self.failed or self.notifications or self.noticed)


def _section(title: str, items: Sequence[str]) -> list[str]:
    if not items:
        return []
    lines = [f"{title} ({len(items)}):"]
    lines += [f"  - {item}" for item in items[:MAX_ITEMS]]
    if len(items) > MAX_ITEMS:
        lines.append(f"  … and {len(items) - MAX_ITEMS} more")
    return [*lines, ""]


def gather(user: Any, start: datetime, end: datetime) -> Briefing:
    """What one user's briefing covers in ``(start, end]``."""
    briefing = Briefing()
    documents = Document.objects.filter(
        owner=user,
        processed_at__gt=start,
        processed_at__lte=end,
        status__in=[DocumentStatus.READY, DocumentStatus.FAILED],
    ).order_by("processed_at", "pk")
    for document in documents:
        if document.status == DocumentStatus.READY:
            briefing.ready.append(f"{document.title} ({document.page_count or 0} pages)")
        else:
            briefing.failed.append(
                f"{document.title}: {' '.join((document.error or 'no reason recorded').split())[:200]}"
            )
    notifications = OutboundMessage.objects.filter(
        user=user, kind=MessageKind.NOTIFICATION, created_at__gt=start, created_at__lte=end
    ).order_by("created_at", "pk")
    briefing.notifications = [f"{m.subject} [{m.get_status_display().lower()}]" for m in notifications]
    memories = Memory.objects.active().filter(user=user, created_at__gt=start, created_at__lte=end)
    briefing.noticed = [
        m.text if m.mentions == 1 else f"{m.text} (x{m.mentions})"
        for m in memories.order_by("created_at", "pk")
    ]
    return briefing


def compose(user: Any, briefing: Briefing, day: str) -> tuple[str, str]:
    """Subject and plain-text body of one briefing."""
    name = user.get_short_name() or user.get_username()
    lines = [f"Good morning {name},", "", f"Here is your briefing for {day}.", ""]
    lines += _section("Documents processed", briefing.ready)
    lines += _section("Documents that failed", briefing.failed)
    lines += _section("Notifications", briefing.notifications)
    lines += _section("What I noticed", briefing.noticed)
    lines.append("-- your fusion-jobs agent")
    return f"Your daily briefing for {day}", "\n".join(lines)


def queue_digests(*, now: datetime, user_id: int | None = None, zone: str | None = None) -> dict[str, Any]:
    """Queue each active user's briefing for the last ``AGENT_DIGEST_HOURS``; users with nothing to report
    get none. At most one per user and local day, so a retried or doubled run queues nothing twice.

    Without ``user_id`` (the shared 07:30 cron) it skips users who chose their own time; with it (that
    user's own schedule) it queues theirs alone, dated in their ``zone``.
    """
    start = now - timedelta(hours=float(conf.get("AGENT_DIGEST_HOURS")))
    local = now.astimezone(ZoneInfo(zone)) if zone else timezone.localtime(now)
    day = local.date().isoformat()
    queued = quiet = already = 0
    users = get_user_model().objects.filter(is_active=True).exclude(email="").order_by("pk")
    # The shared run leaves out who chose their own time; a user's own run covers them alone.
    users = users.exclude(pk__in=users_with_their_own_time()) if user_id is None else users.filter(pk=user_id)
    for user in users.iterator(chunk_size=200):
        briefing = gather(user, start, now)
        if not briefing:
            quiet += 1
            continue
        subject, body = compose(user, briefing, day)
        if queue_message(
            user_id=user.pk,
            to=user.email,
            subject=subject,
            body=body,
            kind=MessageKind.DIGEST,
            dedupe_key=f"digest:{user.pk}:{day}",
            now=now,
        ):
            queued += 1
        else:
            already += 1
    result = {"day": day, "queued": queued, "nothing_to_report": quiet, "already_queued": already}
    logger.info("digest: %s", result)
    return result
