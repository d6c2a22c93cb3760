"""The proactive tick: look at what happened since the watermark, remember it, and tell the owner.

Each tick covers the window ``(watermark, now - settle]`` and moves the watermark to its end in the
same transaction as everything it writes, so windows are contiguous and disjoint: after downtime the
next tick covers the whole gap once, a crashed tick's window is covered again by the next, and no event
is seen twice (event keys are unique as well, as a second guard). The transaction holds a row lock on
the ``AgentState`` row taken with NOWAIT: a tick that finds it taken is recorded as skipped rather than
queued behind an overrunning one. That guard does not depend on the task's ``single_flight`` option.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from django.db import OperationalError, connection, transaction
from django.utils import timezone

from example.documents.models import Document, DocumentStatus

from . import conf
from .delivery import queue_message
from .memory import remember
from .models import AgentState, AgentTick, MemoryKind, MessageKind, MessageStatus, OutboundMessage, TickStatus

logger = logging.getLogger(__name__)

AGENT_NAME = "proactive"


class TickBusy(Exception):
    """Another tick holds the agent's lock."""


def _title(document: Document) -> str:
    title = " ".join((document.title or document.original_name or f"document {document.pk}").split())
    return title if len(title) <= 120 else title[:119] + "…"


def _document_event(document: Document, now: datetime, counts: Counter[str]) -> None:
    ready = document.status == DocumentStatus.READY
    event = "ready" if ready else "failed"
    key = (
        f"document:{document.pk}:{event}:{document.processed_at.isoformat() if document.processed_at else ''}"
    )
    title = _title(document)
    if ready:
        counts["documents_ready"] += 1
        text = (
            f'Document "{title}" is ready: {document.page_count or 0} pages, '
            f"{document.chunk_count or 0} searchable chunks."
        )
        subject = f'Your document "{title}" is ready'
        body = f"{text}\n\nYou can search it now."
    else:
        counts["documents_failed"] += 1
        error = " ".join((document.error or "no reason recorded").split())[:500]
        text = f'Document "{title}" could not be processed: {error}'
        subject = f'Your document "{title}" could not be processed'
        body = f"{text}\n\nYou can upload it again, or a different file."
    if remember(
        user_id=document.owner_id,
        kind=MemoryKind.OBSERVATION,
        text=text,
        source=f"document:{document.pk}",
        event_key=key,
        now=now,
    ):
        counts["memories_created"] += 1
    owner = document.owner
    if (
        owner is not None
        and owner.email
        and queue_message(
            user_id=owner.pk,
            to=owner.email,
            subject=subject,
            body=body,
            kind=MessageKind.NOTIFICATION,
            dedupe_key=f"notify:{key}",
            now=now,
        )
    ):
        counts["messages_queued"] += 1


def _dead_delivery_event(message: OutboundMessage, now: datetime, counts: Counter[str]) -> None:
    counts["deliveries_dead"] += 1
    error = " ".join((message.last_error or "unknown error").split())[:300]
    if remember(
        user_id=message.user_id,
        kind=MemoryKind.DELIVERY,
        text=f'Could not deliver "{message.subject}" to {message.to} after {message.attempts} attempts: {error}',
        source=f"message:{message.pk}",
        event_key=f"message:{message.pk}:dead",
        now=now,
    ):
        counts["memories_created"] += 1


def look_around(start: datetime, end: datetime, now: datetime) -> Counter[str]:
    """Everything that happened in ``(start, end]``: documents that became ready or failed, dead mail."""
    counts: Counter[str] = Counter()
    documents = (
        Document.objects.filter(
            processed_at__gt=start,
            processed_at__lte=end,
            status__in=[DocumentStatus.READY, DocumentStatus.FAILED],
        )
        .select_related("owner")
        .order_by("processed_at", "pk")
    )
    for document in documents.iterator(chunk_size=500):
        _document_event(document, now, counts)
    dead = OutboundMessage.objects.filter(
        status=MessageStatus.DEAD, dead_at__gt=start, dead_at__lte=end
    ).order_by("dead_at", "pk")
    for message in dead.iterator(chunk_size=500):
        _dead_delivery_event(message, now, counts)
    return counts


def _lock_state() -> AgentState:
    """Lock the agent's row for this transaction, or raise TickBusy at once if another tick has it."""
    try:
        state = AgentState.objects.select_for_update(nowait=True).get(name=AGENT_NAME)
    except OperationalError as exc:
        # PostgreSQL's lock_not_available; anything else (a lost connection) is a real failure.
        if getattr(exc.__cause__, "sqlstate", None) != "55P03":
            raise
        raise TickBusy(str(exc)) from None
    if not connection.features.has_select_for_update:
        # SQLite ignores FOR UPDATE; a write takes its database lock, so the watermark re-read is current.
        AgentState.objects.filter(name=AGENT_NAME).update(last_tick_at=state.last_tick_at)
        state.refresh_from_db()
    return state


def _caught_up(start: datetime, end: datetime) -> int:
    """Missed ticks this window covers: a window of ``n`` intervals replaces ``n - 1`` ticks that never ran."""
    interval = float(conf.get("AGENT_TICK_INTERVAL_SECONDS"))
    return max(0, int((end - start).total_seconds() // interval) - 1)


def run_tick(*, now: datetime | None = None, run_id: str = "") -> dict[str, Any]:
    """One proactive tick at ``now`` (injectable for tests); returns a JSON-ready summary."""
    now = now or timezone.now()
    began = time.monotonic()
    end = now - timedelta(seconds=float(conf.get("AGENT_TICK_SETTLE_SECONDS")))
    lookback = timedelta(seconds=float(conf.get("AGENT_FIRST_TICK_LOOKBACK_SECONDS")))
    AgentState.objects.get_or_create(name=AGENT_NAME, defaults={"watermark": end - lookback})
    try:
        with transaction.atomic():
            state = _lock_state()
            start = state.watermark
            end = max(end, start)  # a clock that stepped back covers nothing rather than going back
            first = state.last_tick_at is None  # the first window is the look-back, not missed ticks
            tick = AgentTick.objects.create(
                started_at=now,
                window_start=start,
                window_end=end,
                ticks_caught_up=0 if first else _caught_up(start, end),
                run_id=run_id,
            )
            counts = look_around(start, end, now)
            for field, value in counts.items():
                setattr(tick, field, value)
            tick.status = TickStatus.OK
            tick.finished_at = now + timedelta(seconds=time.monotonic() - began)
            tick.save()
            state.watermark = end
            state.last_tick_at = now
            state.save(update_fields=["watermark", "last_tick_at", "updated_at"])
    except TickBusy:
        tick = AgentTick.objects.create(
            started_at=now,
            finished_at=now + timedelta(seconds=time.monotonic() - began),
            status=TickStatus.SKIPPED,
            skip_reason="another tick is still running (agent lock held)",
            run_id=run_id,
        )
        logger.info("proactive tick skipped: another tick holds the agent lock")
        return _summary(tick)
    except Exception as exc:
        try:
            AgentTick.objects.create(
                started_at=now,
                finished_at=now + timedelta(seconds=time.monotonic() - began),
                status=TickStatus.FAILED,
                error=f"{type(exc).__name__}: {exc}"[:2000],
                run_id=run_id,
            )
        except Exception:  # the database may be what failed; the original error is the one to report
            logger.warning("could not record the failed proactive tick", exc_info=True)
        raise
    if tick.ticks_caught_up:
        logger.info("proactive tick caught up %s missed ticks", tick.ticks_caught_up)
    return _summary(tick)


def _summary(tick: AgentTick) -> dict[str, Any]:
    return {
        "tick": tick.pk,
        "status": tick.status,
        "window_start": tick.window_start.isoformat() if tick.window_start else None,
        "window_end": tick.window_end.isoformat() if tick.window_end else None,
        "ticks_caught_up": tick.ticks_caught_up,
        "documents_ready": tick.documents_ready,
        "documents_failed": tick.documents_failed,
        "deliveries_dead": tick.deliveries_dead,
        "memories_created": tick.memories_created,
        "messages_queued": tick.messages_queued,
    }
