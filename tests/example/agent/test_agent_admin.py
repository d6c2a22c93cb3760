"""The agent's admin pages: history is read-only, the outbox can be retried."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from example.agent.models import AgentTick, Memory, MessageStatus, OutboundMessage

pytestmark = pytest.mark.django_db


def test_every_page_renders_and_history_cannot_be_edited(admin_client: Client) -> None:
    keeper = Memory.objects.create(text="kept", event_key="a")
    Memory.objects.create(text="duplicate", event_key="b", merged_into=keeper, embedding=b"\x00" * 8)
    OutboundMessage.objects.create(to="a@example.test", subject="Hello <b>", body="x")
    AgentTick.objects.create()

    for model in ("agentstate", "agenttick", "memory", "outboundmessage"):
        response = admin_client.get(f"/admin/agent/{model}/")
        assert response.status_code == 200, model
    memories = admin_client.get("/admin/agent/memory/").content.decode()
    assert f"merged into #{keeper.pk}" in memories
    assert "Hello &lt;b&gt;" in admin_client.get("/admin/agent/outboundmessage/").content.decode()
    assert admin_client.get("/admin/agent/agenttick/add/").status_code == 403
    detail = admin_client.get(f"/admin/agent/memory/{keeper.pk}/change/").content.decode()
    assert "kept" in detail and 'name="text"' not in detail  # shown, not editable
    assert "Embedding:" not in detail and "Embedder name:" in detail  # raw vector bytes are not shown


def test_dead_messages_can_be_queued_again(admin_client: Client, t0: Any) -> None:
    dead = OutboundMessage.objects.create(
        to="a@example.test", subject="s", body="b", status=MessageStatus.DEAD, attempts=5, dead_at=t0
    )
    sent = OutboundMessage.objects.create(
        to="a@example.test", subject="s", body="b", status=MessageStatus.SENT
    )

    response = admin_client.post(
        "/admin/agent/outboundmessage/",
        {"action": "retry_now", "_selected_action": [dead.pk, sent.pk]},
        follow=True,
    )

    assert response.status_code == 200
    dead.refresh_from_db()
    sent.refresh_from_db()
    assert (dead.status, dead.attempts, dead.dead_at) == (MessageStatus.PENDING, 0, None)
    assert sent.status == MessageStatus.SENT  # already delivered: left alone
