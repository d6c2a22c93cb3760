"""Retention: delete what the agent no longer needs, oldest first, in bounded batches."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import models

from . import conf
from .models import AgentTick, Memory, MessageStatus, OutboundMessage

logger = logging.getLogger(__name__)


def _days_ago(now: datetime, setting: str) -> datetime:
    return now - timedelta(days=float(conf.get(setting)))


def delete_in_batches(queryset: models.QuerySet[Any], batch: int, max_batches: int) -> int:
    """Delete matching rows ``batch`` at a time (short transactions, no table-wide lock); returns how many
    rows of the queryset's own model went. At most ``max_batches`` per call; the next run continues.
    """
    model = queryset.model
    label = model._meta.label
    deleted = 0
    for _ in range(max_batches):
        ids = list(queryset.order_by("pk").values_list("pk", flat=True)[:batch])
        if not ids:
            break
        _, per_model = model._default_manager.filter(pk__in=ids).delete()
        deleted += per_model.get(label, 0)
        if len(ids) < batch:
            break
    return deleted


def purge(*, now: datetime) -> dict[str, int]:
    """Delete ticks, sent and dead messages, and memories past their windows. Pending and held messages
    are never deleted: they are mail nobody has received yet.
    """
    batch = int(conf.get("AGENT_RETENTION_BATCH"))
    max_batches = int(conf.get("AGENT_RETENTION_MAX_BATCHES"))
    result = {
        "ticks": delete_in_batches(
            AgentTick.objects.filter(started_at__lt=_days_ago(now, "AGENT_RETENTION_TICK_DAYS")),
            batch,
            max_batches,
        ),
        "messages_sent": delete_in_batches(
            OutboundMessage.objects.filter(
                status=MessageStatus.SENT, sent_at__lt=_days_ago(now, "AGENT_RETENTION_SENT_MESSAGE_DAYS")
            ),
            batch,
            max_batches,
        ),
        "messages_dead": delete_in_batches(
            OutboundMessage.objects.filter(
                status=MessageStatus.DEAD, dead_at__lt=_days_ago(now, "AGENT_RETENTION_DEAD_MESSAGE_DAYS")
            ),
            batch,
            max_batches,
        ),
        "memories": delete_in_batches(
            Memory.objects.filter(created_at__lt=_days_ago(now, "AGENT_RETENTION_MEMORY_DAYS")),
            batch,
            max_batches,
        ),
    }
    logger.info("agent retention: %s", result)
    return result
