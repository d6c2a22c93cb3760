"""The outbox relay: runs lost on the way and runs waiting for their time are published from the database."""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import dramatiq
import pytest
from django.db import DatabaseError, connection, connections, transaction
from django.urls import reverse
from django.utils import timezone
from dramatiq.broker import MessageProxy
from prometheus_client import REGISTRY

import fusion_jobs
from fusion_jobs.backends import broker as broker_backend
from fusion_jobs.backends import use_backend
from fusion_jobs.backends.broker import reset_broker
from fusion_jobs.backends.stub import StubBackend
from fusion_jobs.middleware.relay import park_delayed_message
from fusion_jobs.models import JobRun
from fusion_jobs.recording import Attempt, mark_retrying
from fusion_jobs.relay import CHUNK_SIZE, due_runs, lease_seconds, lost_runs, park, relay_once
from tests.conftest import BROKER_URL, wait_for
from tests.testapp.models import Marker

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]

DOWN_URL = "amqp://guest:guest@127.0.0.1:1/"  # nothing listens on port 1: the broker is "down"


def test_outbox_keeps_the_run_and_the_relay_publishes_it(settings, worker):
    settings.FUSION_JOBS_ON_PUBLISH_ERROR = "outbox"
    settings.FUSION_JOBS_BROKER_URL = DOWN_URL
    reset_broker()
    started = time.monotonic()
    handle = fusion_jobs.enqueue("t-record", label="outboxed")
    elapsed = time.monotonic() - started
    assert elapsed < 2.5, f"enqueue took {elapsed:.2f} s with the broker down"
    assert handle.mode == "queued"
    run = JobRun.objects.get(pk=handle.run_id)
    assert (run.status, run.mode, run.published_at) == ("queued", "worker", None)
    assert not Marker.objects.filter(label="outboxed").exists()  # never run inline in outbox mode

    # The relay does nothing while the broker is still down, and loses nothing.
    with pytest.raises(fusion_jobs.PublishError):
        relay_once(min_age=0)
    assert JobRun.objects.get(pk=handle.run_id).published_at is None

    settings.FUSION_JOBS_BROKER_URL = BROKER_URL  # the broker is back
    reset_broker()
    try:
        assert relay_once(min_age=0) == 1
    finally:
        reset_broker()
    run = wait_for(
        lambda: JobRun.objects.filter(pk=handle.run_id, status="succeeded").first(), what="relayed run"
    )
    assert run.published_at is not None and run.attempts == 1
    assert Marker.objects.filter(label="outboxed").count() == 1
    assert relay_once(min_age=0) == 0  # nothing left


def test_relay_skips_fresh_rows_still_being_published(settings):
    settings.FUSION_JOBS_ON_PUBLISH_ERROR = "outbox"
    settings.FUSION_JOBS_BROKER_URL = DOWN_URL
    reset_broker()
    try:
        fusion_jobs.enqueue("t-record", label="fresh")
        assert relay_once() == 0  # younger than MIN_AGE_SECONDS: its own process may still publish it
    finally:
        reset_broker()


# --- Publishing outside row locks, chunk by chunk (issue 12, item 7) ------------------------------


class FakePublisher:
    """Stands in for ``publish_many``: records each chunk's run ids; ``fail_on`` calls raise."""

    def __init__(self, fail_on: tuple[int, ...] = (), during: Any = None) -> None:
        self.fail_on = fail_on
        self.during = during
        self.calls: list[list[str]] = []
        self.published: Counter[str] = Counter()
        self.retries: dict[str, int] = {}
        self.queues: dict[str, tuple[str, str]] = {}

    def __call__(
        self,
        items: list[tuple[Any, str, dict, int | None]],
        *,
        retries: list[int] | None = None,
        traceparents: list[str | None] | None = None,
    ) -> None:
        ids = [run_id for _, run_id, _, _ in items]
        self.calls.append(ids)
        self.queues.update({run_id: (task.name, task.effective_queue) for task, run_id, _, _ in items})
        assert all(delay is None for *_, delay in items), "the relay publishes due runs without a delay"
        if self.during is not None:
            self.during(ids)
        if len(self.calls) in self.fail_on:
            raise fusion_jobs.PublishError(f"chunk {len(self.calls)} refused (test)")
        self.published.update(ids)
        self.retries.update(zip(ids, retries or [0] * len(ids), strict=True))


def outboxed_runs(settings, count: int) -> list[str]:
    """``count`` queued runs whose publish failed (outbox mode), as the relay finds them."""
    settings.FUSION_JOBS_ON_PUBLISH_ERROR = "outbox"
    settings.FUSION_JOBS_BROKER_URL = DOWN_URL
    reset_broker()
    handles = fusion_jobs.enqueue_many("t-record", [{"label": f"r{i}"} for i in range(count)])
    settings.FUSION_JOBS_BROKER_URL = BROKER_URL
    reset_broker()
    return [h.run_id for h in handles]


def test_a_failed_chunk_keeps_the_marks_of_chunks_already_published(settings, monkeypatch):
    """Old code: the whole relay pass was one transaction, so the 2nd chunk's failure rolled back
    the 1st chunk's marks although its messages were on the broker: published again next pass."""
    ids = outboxed_runs(settings, 150)
    publisher = FakePublisher(fail_on=(2,))
    monkeypatch.setattr(broker_backend, "publish_many", publisher)

    with pytest.raises(fusion_jobs.PublishError):
        relay_once(min_age=0)
    assert JobRun.objects.filter(pk__in=ids, published_at__isnull=False).count() == CHUNK_SIZE
    failed_chunk = publisher.calls[1]
    assert (
        JobRun.objects.filter(
            pk__in=failed_chunk, published_at__isnull=True, next_attempt_at__isnull=True
        ).count()
        == 50
    )

    assert relay_once(min_age=0) == 50  # the next pass publishes only what is left
    assert relay_once(min_age=0) == 0
    assert sorted(publisher.published) == sorted(ids)
    assert set(publisher.published.values()) == {1}, "a run was published twice"


def test_no_row_is_locked_while_a_chunk_is_on_the_wire_and_no_other_relay_takes_it(settings, monkeypatch):
    ids = outboxed_runs(settings, 5)
    seen: dict[str, Any] = {}

    def meanwhile(chunk: list[str]) -> None:
        if seen:
            return  # only during the first relay's publish

        def other_connection() -> None:
            try:
                with transaction.atomic():  # another session: a row lock held by the relay blocks it
                    seen["locked"] = len(
                        list(JobRun.objects.select_for_update(nowait=True).filter(pk__in=chunk))
                    )
                seen["other relay"] = relay_once(min_age=0)
            except DatabaseError as exc:
                seen["error"] = exc
            finally:
                connections.close_all()

        thread = threading.Thread(target=other_connection)
        thread.start()
        thread.join(30)

    publisher = FakePublisher(during=meanwhile)
    monkeypatch.setattr(broker_backend, "publish_many", publisher)
    assert relay_once(min_age=0) == 5
    assert "error" not in seen, f"the relay held row locks while publishing: {seen.get('error')}"
    assert seen == {"locked": 5, "other relay": 0}  # free to lock, yet claimed: nobody publishes them twice
    assert sorted(publisher.published) == sorted(ids) and set(publisher.published.values()) == {1}


def test_a_relay_that_died_mid_chunk_leaves_it_to_the_next_after_its_lease(settings, monkeypatch):
    ids = outboxed_runs(settings, 3)

    def die(chunk: list[str]) -> None:
        raise SystemExit("relay process killed mid-publish (test)")

    monkeypatch.setattr(broker_backend, "publish_many", FakePublisher(during=die))
    with pytest.raises(SystemExit):
        relay_once(min_age=0)
    publisher = FakePublisher()
    monkeypatch.setattr(broker_backend, "publish_many", publisher)
    assert relay_once(min_age=0) == 0  # still leased to the dead relay
    later = timezone.now() + timedelta(seconds=lease_seconds() + 1)
    assert relay_once(min_age=0, now=later) == 3
    assert sorted(publisher.published) == sorted(ids)
    assert all(r.published_at for r in JobRun.objects.filter(pk__in=ids))


# --- Delays held in the database and published when due (issue 12, item 3) -----------------------


def test_enqueue_at_holds_the_run_until_it_is_due(broker_settings, monkeypatch):
    publisher = FakePublisher()
    monkeypatch.setattr(broker_backend, "publish_many", publisher)
    when = timezone.now() + timedelta(days=3)
    handle = fusion_jobs.enqueue_at(when, "t-record", label="in three days")
    assert (handle.mode, handle.status) == ("queued", "queued")
    run = JobRun.objects.get(pk=handle.run_id)
    assert (run.status, run.mode, run.published_at, run.next_attempt_at) == ("queued", "worker", None, when)
    assert publisher.calls == []  # nothing published at enqueue time

    assert relay_once(min_age=0) == 0  # not due
    assert relay_once(now=when - timedelta(seconds=1)) == 0
    assert relay_once(now=when + timedelta(seconds=1)) == 1
    assert publisher.calls == [[handle.run_id]]
    run.refresh_from_db()
    assert run.published_at is not None and run.next_attempt_at == when  # still shows its start time


def test_enqueue_at_takes_a_timedelta_and_publishes_a_past_start_at_once(broker_settings):
    before = timezone.now()
    with use_backend(StubBackend()) as stub:
        soon = fusion_jobs.enqueue_at(timedelta(hours=2), "t-record", label="in two hours")
        run = JobRun.objects.get(pk=soon.run_id)
        assert timedelta(hours=2) <= run.next_attempt_at - before < timedelta(hours=2, seconds=5)
        past = fusion_jobs.enqueue_at(timezone.now() - timedelta(minutes=1), "t-record", label="late")
    # a start time already passed: published like enqueue()
    assert [m.run_id for m in stub.messages] == [past.run_id]


def test_enqueue_at_refuses_naive_datetimes_and_other_types(broker_settings):
    with pytest.raises(fusion_jobs.PayloadError, match="naive datetime"):
        fusion_jobs.enqueue_at(datetime(2030, 1, 1, 12, 0), "t-record", label="x")
    with pytest.raises(fusion_jobs.PayloadError, match="not int"):
        fusion_jobs.enqueue_at(60, "t-record", label="x")  # type: ignore[arg-type]
    with pytest.raises(fusion_jobs.UnknownTaskError):
        fusion_jobs.enqueue_at(timedelta(seconds=5), "t-no-such-task")
    assert not JobRun.objects.exists()


def test_enqueue_at_without_a_broker_runs_inline_at_once(settings, caplog):
    settings.FUSION_JOBS_BROKER_URL = ""
    with caplog.at_level(logging.INFO, logger="fusion_jobs"):
        handle = fusion_jobs.enqueue_at(timedelta(days=1), "t-record", label="eager")
    assert (handle.mode, handle.status) == ("inline", "succeeded")
    assert Marker.objects.filter(label="eager").count() == 1
    assert "runs now instead of at" in caplog.text


def test_a_retry_waits_unpublished_and_the_relay_publishes_it_when_due(monkeypatch, settings):
    """The worker records a retry as ``retrying`` with its time and no message."""
    handle = fusion_jobs.enqueue("t-record", label="to retry")  # inline: a finished row to reuse
    JobRun.objects.filter(pk=handle.run_id).update(status="running", mode="worker", attempts=1)
    attempt = Attempt(handle.run_id, 1, "t-record")
    assert mark_retrying(attempt, RuntimeError("boom"), 3600.0, outcome="failed")
    run = JobRun.objects.get(pk=handle.run_id)
    assert (run.status, run.published_at) == ("retrying", None)
    settings.FUSION_JOBS_BROKER_URL = BROKER_URL
    reset_broker()
    publisher = FakePublisher()
    monkeypatch.setattr(broker_backend, "publish_many", publisher)
    assert relay_once(min_age=0) == 0
    assert relay_once(now=run.next_attempt_at + timedelta(seconds=1)) == 1
    assert publisher.retries == {handle.run_id: 1}  # the message says which retry it is


def test_the_admin_shows_a_waiting_runs_start_time(admin_client, broker_settings):
    when = timezone.now() + timedelta(hours=5)
    fusion_jobs.enqueue_at(when, "t-record", label="later")
    body = admin_client.get(reverse("admin:fusion_jobs_jobrun_changelist")).content.decode()
    local = timezone.localtime(when).strftime("%Y-%m-%d %H:%M:%S")
    assert re.search(r"fj-status-queued.*?starts at " + re.escape(local), body, re.S)


# --- Delayed messages parked by the worker instead of held (issue 12, items 2 and 3) -------------


def delayed_message(run_id: str, eta: Any, **kwargs: Any) -> MessageProxy:
    message = dramatiq.Message(
        queue_name="default.DQ",
        actor_name="t-record",
        args=(),
        kwargs=kwargs or {"label": "delayed"},
        options={"eta": eta},
        message_id=run_id,
    )
    return MessageProxy(message)


def test_a_delayed_message_parks_its_waiting_run_and_a_stale_one_is_dropped(broker_settings):
    with use_backend(StubBackend()):
        waiting = fusion_jobs.enqueue("t-record", label="waiting")  # queued, published
    eta = int((time.time() + 3600) * 1000)
    assert park_delayed_message(delayed_message(waiting.run_id, eta)) is True
    run = JobRun.objects.get(pk=waiting.run_id)
    assert (run.status, run.published_at) == ("queued", None)
    assert abs(run.next_attempt_at.timestamp() * 1000 - eta) < 1

    JobRun.objects.filter(pk=waiting.run_id).update(status="running")  # the run got going meanwhile
    assert (
        park(waiting.run_id, task_name="t-record", queue="default", kwargs={}, not_before=timezone.now())
        == "stale"
    )

    missing = str(uuid.uuid4())
    assert park_delayed_message(delayed_message(missing, eta, label="no row")) is True
    created = JobRun.objects.get(pk=missing)
    assert (created.status, created.queue, created.kwargs, created.published_at) == (
        "queued",
        "default",
        {"label": "no row"},
        None,
    )


def test_a_delayed_message_that_cannot_be_parked_goes_on_at_once_instead_of_waiting(broker_settings):
    eta = int((time.time() + 3600) * 1000)
    bad_id = delayed_message("not-a-uuid", eta)
    assert park_delayed_message(bad_id) is False and "eta" not in bad_id.options  # to validation, now
    past = delayed_message(str(uuid.uuid4()), int(time.time() * 1000) - 1000)
    assert park_delayed_message(past) is False and "eta" in past.options  # Dramatiq's own path
    assert not JobRun.objects.exists()


def test_the_relays_polls_are_index_range_scans(broker_settings):
    """Polled every second by every worker process: each query must be one partial-index range scan."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # an empty table would be scanned otherwise
        now = timezone.now()
        due = due_runs("default", now)[:100].explain()
        lost = lost_runs("default", now - timedelta(seconds=10))[:100].explain()
    assert "Index Scan using fj_run_due" in due and "Filter" not in due, due
    assert "Index Scan using fj_run_unpublished" in lost and "Filter" not in lost, lost


def test_a_waiting_run_of_a_task_this_process_does_not_know_is_published_to_its_queue(
    broker_settings, monkeypatch
):
    """A retry or deferred run of a task this process doesn't have (a rolling deploy: only the new
    code has it, or it was removed) is published to its queue, once: a worker that knows the task
    runs it, one that doesn't dead-letters it with a failed run. It is never failed here, and
    never blocks the due runs behind it."""
    publisher = FakePublisher()
    monkeypatch.setattr(broker_backend, "publish_many", publisher)
    # Due only at a time this test's relay_once is given: the rows are committed (transactional
    # test) and any live worker's relay polling in real time would otherwise take them first.
    due_at = timezone.now() + timedelta(days=30)
    later = due_at + timedelta(days=1)
    unknown = [
        JobRun.objects.create(
            task_name="t-only-in-the-new-code",
            queue="fj-new",
            mode="worker",
            status=status,
            next_attempt_at=due_at,
        )
        for status in ("queued", "retrying")
    ]
    lost = JobRun.objects.create(
        task_name="t-only-in-the-new-code", queue="fj-new", mode="worker", status="queued"
    )
    JobRun.objects.filter(pk=lost.pk).update(enqueued_at=due_at)
    kept = JobRun.objects.create(
        task_name="t-record",
        mode="worker",
        status="queued",
        kwargs={"label": "behind"},
        next_attempt_at=due_at + timedelta(seconds=1),
    )

    assert relay_once(min_age=0, now=later) == 4
    assert sorted(publisher.published) == sorted(str(r.pk) for r in [*unknown, lost, kept])
    for run in [*unknown, lost]:
        run.refresh_from_db()
        assert run.status in ("queued", "retrying") and run.published_at is not None
        assert publisher.queues[str(run.pk)] == ("t-only-in-the-new-code", "fj-new")
    assert relay_once(min_age=0, now=later) == 0


def test_the_relay_counts_what_it_publishes_in_its_metrics(broker_settings, monkeypatch):
    """``fusion_jobs_relay_published_total`` (in this process's registry: no exporter here)."""
    monkeypatch.setattr(broker_backend, "publish_many", FakePublisher())
    before = REGISTRY.get_sample_value("fusion_jobs_relay_published_total") or 0.0
    due = timezone.now() + timedelta(days=30)  # due only for this relay_once (see above)
    for label in ("a", "b"):
        JobRun.objects.create(
            task_name="t-record",
            mode="worker",
            status="retrying",
            kwargs={"label": label},
            next_attempt_at=due,
        )
    assert relay_once(min_age=0, now=due + timedelta(seconds=1)) == 2
    after = REGISTRY.get_sample_value("fusion_jobs_relay_published_total")
    assert after == before + 2
