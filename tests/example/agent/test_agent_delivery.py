"""The outbox: held without SMTP, sent with it, backing off on failure and dead after the limit."""

from __future__ import annotations

import logging
import smtplib
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.core import mail
from django.core.mail.backends import locmem

from example.agent import delivery, ticks
from example.agent.models import Memory, MemoryKind, MessageStatus, OutboundMessage

pytestmark = pytest.mark.django_db

SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)


def queue(now: datetime, key: str = "k1", **extra: Any) -> OutboundMessage:
    delivery.queue_message(
        user_id=None,
        to="ada@example.test",
        subject="Hello",
        body="Body text",
        dedupe_key=key,
        now=now,
        **extra,
    )
    return OutboundMessage.objects.get(dedupe_key=key)


def reload(message: OutboundMessage) -> OutboundMessage:
    message.refresh_from_db()
    return message


def test_queueing_twice_with_one_key_queues_once(t0: datetime) -> None:
    assert delivery.queue_message(
        user_id=None, to="a@example.test", subject="s", body="b", dedupe_key="x", now=t0
    )
    assert not delivery.queue_message(
        user_id=None, to="a@example.test", subject="s", body="b", dedupe_key="x", now=t0
    )
    assert OutboundMessage.objects.count() == 1


def test_without_smtp_messages_are_held_logged_once_and_never_sent(
    t0: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    message = queue(t0)
    caplog.set_level(logging.INFO, logger="example.agent.delivery")

    first = delivery.deliver_due(now=t0)
    second = delivery.deliver_due(now=t0 + MINUTE)

    assert first == {"mode": "held", "held": 1, "held_total": 1, "sent": 0, "failed": 0, "dead": 0}
    assert second["held"] == 0 and second["held_total"] == 1
    message = reload(message)
    assert message.status == MessageStatus.HELD
    assert (message.attempts, message.sent_at) == (0, None)
    assert mail.outbox == []
    holding = [r for r in caplog.records if "holding" in r.getMessage()]
    assert len(holding) == 1
    assert "SMTP_HOST unset" in holding[0].getMessage() and "ada@example.test" in holding[0].getMessage()


def test_held_messages_go_out_once_smtp_is_configured(t0: datetime, settings: Any) -> None:
    message = queue(t0)
    delivery.deliver_due(now=t0)
    assert reload(message).status == MessageStatus.HELD

    settings.SMTP_HOST = "smtp.example.test"
    result = delivery.deliver_due(now=t0 + 5 * MINUTE)

    assert result["sent"] == 1
    message = reload(message)
    assert (message.status, message.sent_at, message.attempts) == (MessageStatus.SENT, t0 + 5 * MINUTE, 1)
    assert [(m.subject, m.to, m.body) for m in mail.outbox] == [("Hello", ["ada@example.test"], "Body text")]


def test_with_smtp_due_messages_are_sent_and_later_ones_wait(t0: datetime, smtp_on: Any) -> None:
    due = queue(t0, "due")
    later = queue(t0 + 10 * MINUTE, "later")

    result = delivery.deliver_due(now=t0 + MINUTE)

    assert result == {"mode": "smtp", "held": 0, "sent": 1, "failed": 0, "dead": 0}
    assert reload(due).status == MessageStatus.SENT
    assert reload(later).status == MessageStatus.PENDING and reload(later).attempts == 0
    assert len(mail.outbox) == 1
    assert mail.outbox[0].from_email == smtp_on.AGENT_FROM_EMAIL

    delivery.deliver_due(now=t0 + 2 * MINUTE)
    assert len(mail.outbox) == 1  # a sent message is never sent again


def test_failures_back_off_exponentially_and_the_message_dies_after_the_limit(
    t0: datetime, smtp_on: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: Any, messages: Any) -> int:
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")

    monkeypatch.setattr(locmem.EmailBackend, "send_messages", refuse)
    message = queue(t0)

    assert delivery.deliver_due(now=t0)["failed"] == 1
    message = reload(message)
    assert (message.status, message.attempts) == (MessageStatus.PENDING, 1)
    assert message.next_attempt_at == t0 + MINUTE
    assert message.last_error == "SMTPServerDisconnected: Connection unexpectedly closed"

    assert delivery.deliver_due(now=t0 + 30 * SECOND)["failed"] == 0  # not due yet
    assert reload(message).attempts == 1

    delivery.deliver_due(now=t0 + MINUTE)
    message = reload(message)
    assert message.attempts == 2
    assert message.next_attempt_at == t0 + MINUTE + 2 * MINUTE  # doubled

    result = delivery.deliver_due(now=t0 + 3 * MINUTE)  # the third and last attempt allowed
    message = reload(message)
    assert result["dead"] == 1
    assert (message.status, message.attempts, message.dead_at) == (MessageStatus.DEAD, 3, t0 + 3 * MINUTE)
    assert message.sent_at is None

    assert delivery.deliver_due(now=t0 + 60 * MINUTE) == {
        "mode": "smtp",
        "held": 0,
        "sent": 0,
        "failed": 0,
        "dead": 0,
    }
    assert reload(message).attempts == 3


def test_the_backoff_doubles_up_to_its_cap(settings: Any) -> None:
    settings.AGENT_DELIVERY_BACKOFF_SECONDS = 60
    settings.AGENT_DELIVERY_MAX_BACKOFF_SECONDS = 300

    assert [delivery.backoff(n).total_seconds() for n in range(1, 6)] == [60, 120, 240, 300, 300]


def test_an_unreachable_server_fails_the_whole_batch_but_loses_nothing(
    t0: datetime, smtp_on: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(self: Any) -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(locmem.EmailBackend, "open", unreachable)
    first, second = queue(t0, "a"), queue(t0, "b")

    result = delivery.deliver_due(now=t0)

    assert (result["failed"], result["sent"]) == (2, 0)
    for message in (reload(first), reload(second)):
        assert (message.status, message.attempts) == (MessageStatus.PENDING, 1)
        assert "Connection refused" in message.last_error


def test_a_dead_delivery_becomes_a_memory_on_the_next_tick(
    t0: datetime, smtp_on: Any, make_state, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.AGENT_DELIVERY_MAX_ATTEMPTS = 1

    def refuse(self: Any, messages: Any) -> int:
        raise smtplib.SMTPException("no")

    monkeypatch.setattr(locmem.EmailBackend, "send_messages", refuse)
    make_state(t0)
    message = queue(t0 + 10 * SECOND)
    delivery.deliver_due(now=t0 + 20 * SECOND)

    ticks.run_tick(now=t0 + MINUTE)

    memory = Memory.objects.get(kind=MemoryKind.DELIVERY)
    assert memory.event_key == f"message:{message.pk}:dead"
    assert memory.text == 'Could not deliver "Hello" to ada@example.test after 1 attempts: SMTPException: no'
