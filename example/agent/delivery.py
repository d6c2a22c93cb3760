"""The outbox: queue a message, and the delivery cron that sends due ones with backoff, or holds them.

Graceful degradation like the seed's mailer: with ``SMTP_HOST`` set, due messages go out through
Django's mail framework; without it they are logged once and held (``held``), never marked sent and
never dropped, and are sent by the first delivery run after SMTP is configured.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import Q

from . import conf
from .models import MessageKind, MessageStatus, OutboundMessage

logger = logging.getLogger(__name__)


def queue_message(
    *,
    user_id: int | None,
    to: str,
    subject: str,
    body: str,
    kind: str = MessageKind.NOTIFICATION,
    dedupe_key: str,
    now: datetime,
) -> bool:
    """Queue a message unless one with ``dedupe_key`` exists; True when this call queued it."""
    _, created = OutboundMessage.objects.get_or_create(
        dedupe_key=dedupe_key,
        defaults={
            "user_id": user_id,
            "to": to,
            "subject": subject[:200],
            "body": body,
            "kind": kind,
            "status": MessageStatus.PENDING,
            "next_attempt_at": now,
            "created_at": now,
        },
    )
    return created


def backoff(attempts: int) -> timedelta:
    """Delay before the next attempt after ``attempts`` failed ones: doubling from the base, capped."""
    base = float(conf.get("AGENT_DELIVERY_BACKOFF_SECONDS"))
    cap = float(conf.get("AGENT_DELIVERY_MAX_BACKOFF_SECONDS"))
    return timedelta(seconds=min(cap, base * 2 ** max(0, attempts - 1)))


def _hold_due(now: datetime, batch: int) -> dict[str, Any]:
    with transaction.atomic():
        newly_held = list(
            OutboundMessage.objects.select_for_update(skip_locked=True)
            .filter(status=MessageStatus.PENDING, next_attempt_at__lte=now)
            .order_by("next_attempt_at", "pk")[:batch]
        )
        for message in newly_held:
            logger.info(
                "mailer not configured (SMTP_HOST unset): holding %r to %s (message %s)",
                message.subject,
                message.to,
                message.pk,
            )
        OutboundMessage.objects.filter(pk__in=[m.pk for m in newly_held]).update(status=MessageStatus.HELD)
    return {
        "mode": "held",
        "held": len(newly_held),
        "held_total": OutboundMessage.objects.filter(status=MessageStatus.HELD).count(),
        "sent": 0,
        "failed": 0,
        "dead": 0,
    }


def _claim_due(now: datetime, batch: int) -> list[OutboundMessage]:
    """Take due messages and book their attempt before sending: a concurrent run skips them, and a run
    that dies mid-send leaves them due again after the backoff instead of stuck.
    """
    with transaction.atomic():
        claimed = list(
            OutboundMessage.objects.select_for_update(skip_locked=True)
            .filter(
                Q(status=MessageStatus.PENDING) | Q(status=MessageStatus.HELD),
                next_attempt_at__lte=now,
            )
            .order_by("next_attempt_at", "pk")[:batch]
        )
        for message in claimed:
            message.attempts += 1
            message.last_attempt_at = now
            message.next_attempt_at = now + backoff(message.attempts)
            message.status = MessageStatus.PENDING
        OutboundMessage.objects.bulk_update(
            claimed, ["attempts", "last_attempt_at", "next_attempt_at", "status"], batch_size=200
        )
    return claimed


def _record_failure(message: OutboundMessage, error: str, now: datetime) -> bool:
    """Record a failed attempt; True when it was the last one allowed and the message is now dead."""
    dead = message.attempts >= int(conf.get("AGENT_DELIVERY_MAX_ATTEMPTS"))
    fields: dict[str, Any] = {"last_error": error[:2000]}
    if dead:
        fields.update(status=MessageStatus.DEAD, dead_at=now)
        logger.warning(
            "message %s to %s is dead after %s attempts: %s", message.pk, message.to, message.attempts, error
        )
    OutboundMessage.objects.filter(pk=message.pk, status=MessageStatus.PENDING).update(**fields)
    return dead


def deliver_due(*, now: datetime, batch: int | None = None) -> dict[str, Any]:
    """Send the messages that are due, or hold them when there is no mailer."""
    batch = int(batch or conf.get("AGENT_DELIVERY_BATCH"))
    if not conf.mailer_enabled():
        return _hold_due(now, batch)
    claimed = _claim_due(now, batch)
    sent = failed = dead = 0
    if claimed:
        from_email = str(conf.get("AGENT_FROM_EMAIL"))
        try:
            connection = get_connection(fail_silently=False)
            connection.open()
        except Exception as exc:  # the server is down: every claimed message failed this attempt
            error = f"{type(exc).__name__}: {exc}"
            for message in claimed:
                if _record_failure(message, error, now):
                    dead += 1
                else:
                    failed += 1
        else:
            try:
                for message in claimed:
                    try:
                        EmailMessage(
                            message.subject, message.body, from_email, [message.to], connection=connection
                        ).send()
                    except Exception as exc:
                        if _record_failure(message, f"{type(exc).__name__}: {exc}", now):
                            dead += 1
                        else:
                            failed += 1
                    else:
                        OutboundMessage.objects.filter(pk=message.pk).update(
                            status=MessageStatus.SENT, sent_at=now, last_error=""
                        )
                        sent += 1
            finally:
                connection.close()
    result = {"mode": "smtp", "held": 0, "sent": sent, "failed": failed, "dead": dead}
    if claimed:
        logger.info("delivery: %s", result)
    return result
