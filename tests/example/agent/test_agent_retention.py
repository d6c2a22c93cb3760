"""Retention deletes exactly what is past its window, in bounded batches, and never unsent mail."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from example.agent import retention
from example.agent.models import AgentTick, Memory, MessageStatus, OutboundMessage, TickStatus

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


@pytest.fixture(autouse=True)
def windows(settings: Any) -> None:
    settings.AGENT_RETENTION_TICK_DAYS = 7
    settings.AGENT_RETENTION_SENT_MESSAGE_DAYS = 30
    settings.AGENT_RETENTION_DEAD_MESSAGE_DAYS = 90
    settings.AGENT_RETENTION_MEMORY_DAYS = 180
    settings.AGENT_RETENTION_BATCH = 500
    settings.AGENT_RETENTION_MAX_BATCHES = 20


def tick(at: datetime) -> AgentTick:
    return AgentTick.objects.create(started_at=at, status=TickStatus.OK)


def message(status: str, created: datetime, **extra: Any) -> OutboundMessage:
    return OutboundMessage.objects.create(
        to="a@example.test", subject=status, body="", status=status, created_at=created, **extra
    )


def memory(created: datetime, **extra: Any) -> Memory:
    return Memory.objects.create(text=f"noticed at {created:%Y-%m-%d}", created_at=created, **extra)


def test_only_rows_past_their_windows_go(t0: datetime) -> None:
    old_tick, new_tick = tick(t0 - 8 * DAY), tick(t0 - 6 * DAY)
    old_sent = message(MessageStatus.SENT, t0 - 40 * DAY, sent_at=t0 - 31 * DAY)
    new_sent = message(MessageStatus.SENT, t0 - 40 * DAY, sent_at=t0 - 29 * DAY)
    old_dead = message(MessageStatus.DEAD, t0 - 100 * DAY, dead_at=t0 - 91 * DAY)
    new_dead = message(MessageStatus.DEAD, t0 - 100 * DAY, dead_at=t0 - 89 * DAY)
    # Mail nobody has received yet is kept however old it is.
    pending = message(MessageStatus.PENDING, t0 - 400 * DAY)
    held = message(MessageStatus.HELD, t0 - 400 * DAY)
    old_memory, new_memory = memory(t0 - 181 * DAY), memory(t0 - 179 * DAY)

    result = retention.purge(now=t0)

    assert result == {"ticks": 1, "messages_sent": 1, "messages_dead": 1, "memories": 1}
    assert set(AgentTick.objects.values_list("pk", flat=True)) == {new_tick.pk}
    assert set(OutboundMessage.objects.values_list("pk", flat=True)) == {
        new_sent.pk,
        new_dead.pk,
        pending.pk,
        held.pk,
    }
    assert set(Memory.objects.values_list("pk", flat=True)) == {new_memory.pk}
    for gone in (old_tick, old_sent, old_dead, old_memory):
        assert not type(gone).objects.filter(pk=gone.pk).exists()


def test_deletes_in_bounded_batches_and_the_next_run_continues(t0: datetime, settings: Any) -> None:
    settings.AGENT_RETENTION_BATCH = 2
    settings.AGENT_RETENTION_MAX_BATCHES = 2
    for n in range(7):
        tick(t0 - (10 + n) * DAY)
    keep = tick(t0 - DAY)

    assert retention.purge(now=t0)["ticks"] == 4  # two batches of two
    assert AgentTick.objects.count() == 4
    assert retention.purge(now=t0)["ticks"] == 3
    assert retention.purge(now=t0)["ticks"] == 0
    assert list(AgentTick.objects.values_list("pk", flat=True)) == [keep.pk]


def test_an_expired_memory_frees_the_recent_duplicate_it_had_absorbed(t0: datetime) -> None:
    keeper = memory(t0 - 200 * DAY, mentions=2)
    duplicate = memory(t0 - 10 * DAY, merged_into=keeper)
    old_summary = memory(t0 - 190 * DAY)
    rolled_up = memory(t0 - 195 * DAY, summarized_in=old_summary)

    retention.purge(now=t0)

    duplicate.refresh_from_db()
    assert duplicate.merged_into is None and duplicate.is_active  # still recent: it stays, now on its own
    assert not Memory.objects.filter(pk__in=[keeper.pk, old_summary.pk, rolled_up.pk]).exists()
