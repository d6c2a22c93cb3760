"""Memory consolidation: near-duplicates merged into the oldest, old memories rolled into a summary."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from example.agent.memory import consolidate_memories
from example.agent.models import Memory, MemoryKind

pytestmark = pytest.mark.django_db

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def remember(user: Any, text: str, at: datetime, kind: str = MemoryKind.OBSERVATION) -> Memory:
    return Memory.objects.create(user=user, text=text, kind=kind, created_at=at, last_seen_at=at)


def test_near_duplicates_merge_into_the_oldest_and_distinct_ones_stay(t0: datetime, make_user) -> None:
    ada, bob = make_user(), make_user()
    text = 'Document "Quarterly report" is ready: 12 pages, 40 searchable chunks.'
    first = remember(ada, text, t0 - 3 * HOUR)
    again = remember(ada, text, t0 - 2 * HOUR)
    nearly = remember(ada, text.replace("ready:", "ready -"), t0 - HOUR)
    other = remember(ada, 'Document "Holiday photos" could not be processed: not a PDF', t0 - HOUR)
    other_user = remember(bob, text, t0 - HOUR)  # never merged across users
    other_kind = remember(ada, text, t0 - HOUR, kind=MemoryKind.DELIVERY)  # nor across kinds

    result = consolidate_memories(now=t0)

    assert result["merged"] == 2
    for row in (first, again, nearly, other, other_user, other_kind):
        row.refresh_from_db()
    assert again.merged_into == first and nearly.merged_into == first
    assert first.is_active and first.mentions == 3
    assert first.last_seen_at == t0 - HOUR
    assert set(first.merged.all()) == {again, nearly}
    assert other.is_active and other_user.is_active and other_kind.is_active
    assert set(Memory.objects.active()) == {first, other, other_user, other_kind}

    assert consolidate_memories(now=t0)["merged"] == 0  # nothing left to merge


def test_old_memories_roll_up_into_a_summary_that_links_them(t0: datetime, make_user, settings: Any) -> None:
    settings.AGENT_MEMORY_SUMMARY_AFTER_DAYS = 7
    settings.AGENT_MEMORY_SUMMARY_MIN = 3
    user = make_user()
    old = [
        remember(user, f"Old observation number {i} about {topic}", t0 - (10 + i) * DAY)
        for i, topic in enumerate(["rivers", "galaxies", "football"])
    ]
    recent = remember(user, "Something that happened yesterday", t0 - DAY)

    result = consolidate_memories(now=t0)

    assert (result["summaries"], result["summarized"]) == (1, 3)
    summary = Memory.objects.get(kind=MemoryKind.SUMMARY)
    assert summary.user == user and summary.created_at == t0
    assert set(summary.summarized.all()) == set(old)
    assert summary.text.startswith(
        f"Summary of 3 memories from {(t0 - 12 * DAY):%Y-%m-%d} to {(t0 - 10 * DAY):%Y-%m-%d}:"
    )
    for memory in old:
        assert memory.text in summary.text
    recent.refresh_from_db()
    assert recent.is_active
    assert set(Memory.objects.active()) == {summary, recent}

    again = consolidate_memories(now=t0 + DAY)
    assert again["summaries"] == 0  # summaries are not summarised again, and nothing else is old


def test_too_few_old_memories_are_left_alone(t0: datetime, make_user, settings: Any) -> None:
    settings.AGENT_MEMORY_SUMMARY_MIN = 3
    user = make_user()
    remember(user, "one old thing", t0 - 30 * DAY)
    remember(user, "another old thing entirely", t0 - 31 * DAY)

    assert consolidate_memories(now=t0)["summaries"] == 0
    assert not Memory.objects.filter(kind=MemoryKind.SUMMARY).exists()
