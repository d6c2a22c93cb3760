"""The proactive tick against real rows and a hand-moved clock: windows, catch-up, single flight."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection

from example.agent import ticks
from example.agent.models import (
    AgentState,
    AgentTick,
    Memory,
    MemoryKind,
    MessageStatus,
    OutboundMessage,
    TickStatus,
)
from example.documents.models import DocumentStatus

pytestmark = pytest.mark.django_db

SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)


def state() -> AgentState:
    return AgentState.objects.get(name=ticks.AGENT_NAME)


def test_first_tick_looks_back_once_and_starts_the_watermark(t0: datetime, make_user, make_document) -> None:
    owner = make_user("ada")
    recent = make_document(owner, title="Fresh notes", processed_at=t0 - 10 * MINUTE)
    make_document(owner, title="Ancient", processed_at=t0 - 2 * timedelta(hours=1))  # before the look-back

    summary = ticks.run_tick(now=t0)

    assert summary["status"] == "ok"
    assert summary["documents_ready"] == 1
    assert summary["ticks_caught_up"] == 0  # the first window is a look-back, not missed ticks
    assert state().watermark == t0 - 5 * SECOND
    memory = Memory.objects.get()
    assert memory.text == 'Document "Fresh notes" is ready: 3 pages, 5 searchable chunks.'
    assert memory.user == owner
    assert memory.source == f"document:{recent.pk}"
    message = OutboundMessage.objects.get()
    assert (message.to, message.subject, message.status) == (
        "ada@example.test",
        'Your document "Fresh notes" is ready',
        MessageStatus.PENDING,
    )
    assert message.next_attempt_at == t0


def test_a_gap_is_covered_exactly_once_and_counted_as_caught_up_ticks(
    t0: datetime, make_user, make_document, make_state
) -> None:
    owner = make_user()
    make_state(t0)
    # The worker is down for ten minutes; documents keep finishing meanwhile.
    during = [
        make_document(owner, processed_at=t0 + offset) for offset in (30 * SECOND, 4 * MINUTE, 9 * MINUTE)
    ]
    # Finished after the window's end (now - settle): belongs to the next tick, not this one.
    late = make_document(owner, processed_at=t0 + 10 * MINUTE - 2 * SECOND)
    # Already covered by the previous tick (at or before the watermark).
    make_document(owner, processed_at=t0 - 5 * SECOND)

    after_gap = ticks.run_tick(now=t0 + 10 * MINUTE)

    assert after_gap["status"] == "ok"
    assert after_gap["documents_ready"] == 3
    assert after_gap["ticks_caught_up"] == 9  # ten intervals in one window: nine ticks never ran
    tick = AgentTick.objects.get(pk=after_gap["tick"])
    assert tick.window_start == t0 - 5 * SECOND
    assert tick.window_end == t0 + 10 * MINUTE - 5 * SECOND
    assert {m.source for m in Memory.objects.all()} == {f"document:{d.pk}" for d in during}

    next_minute = ticks.run_tick(now=t0 + 11 * MINUTE)

    assert next_minute["ticks_caught_up"] == 0
    assert next_minute["documents_ready"] == 1  # only the late one
    assert Memory.objects.filter(source=f"document:{late.pk}").count() == 1
    # Every document noticed once, told once; the one before the watermark never.
    sources = Counter(Memory.objects.values_list("source", flat=True))
    assert sorted(sources.values()) == [1, 1, 1, 1]
    assert OutboundMessage.objects.count() == 4

    again = ticks.run_tick(now=t0 + 12 * MINUTE)

    assert again["documents_ready"] == again["memories_created"] == again["messages_queued"] == 0
    assert Memory.objects.count() == 4
    assert state().watermark == t0 + 12 * MINUTE - 5 * SECOND


def test_failures_and_dead_deliveries_are_noticed(t0: datetime, make_user, make_document, make_state) -> None:
    owner = make_user("grace")
    make_state(t0)
    make_document(
        owner,
        title="scan.pdf",
        status=DocumentStatus.FAILED,
        error="no text layer (a scan?)",
        processed_at=t0 + 20 * SECOND,
    )
    dead = OutboundMessage.objects.create(
        user=owner,
        to="grace@example.test",
        subject="Hello",
        body="...",
        status=MessageStatus.DEAD,
        attempts=5,
        last_error="SMTPServerDisconnected: gone",
        dead_at=t0 + 30 * SECOND,
    )

    summary = ticks.run_tick(now=t0 + MINUTE)

    assert (summary["documents_failed"], summary["deliveries_dead"], summary["memories_created"]) == (1, 1, 2)
    failed = Memory.objects.get(kind=MemoryKind.OBSERVATION)
    assert failed.text == 'Document "scan.pdf" could not be processed: no text layer (a scan?)'
    delivery = Memory.objects.get(kind=MemoryKind.DELIVERY)
    assert delivery.source == f"message:{dead.pk}"
    assert "after 5 attempts: SMTPServerDisconnected: gone" in delivery.text
    # The owner hears about the failure; nobody is mailed about mail that cannot be delivered.
    notification = OutboundMessage.objects.exclude(pk=dead.pk).get()
    assert notification.subject == 'Your document "scan.pdf" could not be processed'
    assert summary["messages_queued"] == 1


def test_documents_without_an_owner_email_are_remembered_but_not_mailed(
    t0: datetime, make_user, make_document, make_state
) -> None:
    make_state(t0)
    make_document(None, processed_at=t0 + SECOND)
    make_document(make_user(email=None), processed_at=t0 + 2 * SECOND)

    summary = ticks.run_tick(now=t0 + MINUTE)

    assert (summary["documents_ready"], summary["memories_created"], summary["messages_queued"]) == (2, 2, 0)
    assert not OutboundMessage.objects.exists()


def test_documents_still_processing_wait_for_a_later_tick(
    t0: datetime, make_user, make_document, make_state
) -> None:
    owner = make_user()
    make_state(t0)
    document = make_document(owner, status=DocumentStatus.PROCESSING)

    assert ticks.run_tick(now=t0 + MINUTE)["documents_ready"] == 0

    document.status, document.processed_at = DocumentStatus.READY, t0 + 90 * SECOND
    document.save()

    assert ticks.run_tick(now=t0 + 2 * MINUTE)["documents_ready"] == 1


def test_a_crashed_tick_keeps_the_watermark_so_the_next_one_covers_its_window(
    t0: datetime, make_user, make_document, make_state, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_state(t0)
    make_document(make_user(), processed_at=t0 + 10 * SECOND)

    def explode(*args: Any) -> Counter[str]:
        raise RuntimeError("database went away")

    with monkeypatch.context() as patch:
        patch.setattr(ticks, "look_around", explode)
        with pytest.raises(RuntimeError):
            ticks.run_tick(now=t0 + MINUTE)

    failed = AgentTick.objects.get()
    assert failed.status == TickStatus.FAILED
    assert failed.error == "RuntimeError: database went away"
    assert state().watermark == t0 - 5 * SECOND
    assert not Memory.objects.exists()

    summary = ticks.run_tick(now=t0 + 2 * MINUTE)

    assert summary["documents_ready"] == 1
    assert summary["ticks_caught_up"] == 1  # the crashed tick's minute, covered now


@pytest.mark.django_db(transaction=True)
def test_an_overlapping_tick_is_skipped_and_recorded(
    t0: datetime, make_user, make_document, make_state, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_state(t0)
    make_document(make_user(), processed_at=t0 + 10 * SECOND)
    inside, release = threading.Event(), threading.Event()
    real_look_around = ticks.look_around
    outcome: dict[str, Any] = {}

    def slow_look_around(*args: Any) -> Counter[str]:
        inside.set()
        assert release.wait(20), "the test never released the overrunning tick"
        return real_look_around(*args)

    def overrunning_tick() -> None:
        try:
            outcome.update(ticks.run_tick(now=t0 + MINUTE))
        finally:
            connection.close()

    monkeypatch.setattr(ticks, "look_around", slow_look_around)
    thread = threading.Thread(target=overrunning_tick)
    thread.start()
    try:
        assert inside.wait(20), "the first tick never started"
        monkeypatch.setattr(ticks, "look_around", real_look_around)

        skipped = ticks.run_tick(now=t0 + 2 * MINUTE)  # the next minute, while the first still runs
    finally:
        release.set()
        thread.join(20)

    assert skipped["status"] == "skipped"
    row = AgentTick.objects.get(pk=skipped["tick"])
    assert row.status == TickStatus.SKIPPED
    assert "another tick" in row.skip_reason
    assert row.window_start is None
    assert outcome["status"] == "ok" and outcome["documents_ready"] == 1
    # The skipped tick moved nothing: the watermark is where the overrunning tick left it.
    assert state().watermark == t0 + MINUTE - 5 * SECOND

    caught_up = ticks.run_tick(now=t0 + 3 * MINUTE)

    assert caught_up["ticks_caught_up"] == 1  # the skipped minute
    assert caught_up["documents_ready"] == 0
    assert Memory.objects.count() == 1


def test_the_task_records_its_run_on_the_tick(django_capture_on_commit_callbacks: Callable[..., Any]) -> None:
    import fusion_jobs
    from fusion_jobs.models import JobRun

    with django_capture_on_commit_callbacks(execute=True):
        handle = fusion_jobs.enqueue("proactive-agent-tick")

    run = JobRun.objects.get(pk=handle.run_id)
    assert run.status == "succeeded", run.error
    tick = AgentTick.objects.get()
    assert tick.run_id == handle.run_id
    assert run.result["tick"] == tick.pk
