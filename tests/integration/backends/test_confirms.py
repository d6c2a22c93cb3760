"""Publishing without waiting for confirms (``backends.confirms``) on the real RabbitMQ and PostgreSQL.

A message whose confirm never comes (a nack, no queue, a connection lost first) must leave its run
unmarked, so that the relay publishes it again, once; everything confirmed is reported, and no
thread outlives the publisher.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pika
import pytest
from django.db import connection, transaction

import fusion_jobs
from fusion_jobs import outbox
from fusion_jobs.backends.broker import flush_publishes, reset_broker
from fusion_jobs.backends.confirms import ConfirmingPublisher, Envelope
from fusion_jobs.exceptions import PublishError
from fusion_jobs.marking import flush_marks, mark_later, stop_marking
from fusion_jobs.models import JobRun
from fusion_jobs.relay import relay_once
from tests.conftest import BROKER_URL, purge_queues, wait_for
from tests.support.proxy import Proxy
from tests.testapp.models import Marker

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]


def publisher_threads() -> list[str]:
    return [
        t.name for t in threading.enumerate() if t.name in ("fusion-jobs-publisher", "fusion-jobs-marker")
    ]


def broker_proxy() -> Proxy:
    """A proxy to the test broker: ``hold`` swallows its confirms, ``close()`` loses the connection."""
    return Proxy(("127.0.0.1", 5672))


def proxied(proxy: Proxy) -> str:
    return BROKER_URL.replace("127.0.0.1:5672", f"127.0.0.1:{proxy.port}")


@pytest.fixture
def channel() -> Iterator[Any]:
    conn = pika.BlockingConnection(pika.URLParameters(BROKER_URL))
    yield conn.channel()
    conn.close()


@pytest.fixture
def scratch_queue(channel: Any) -> Iterator[str]:
    name = f"fj-confirms-{uuid.uuid4().hex[:8]}"
    channel.queue_declare(name, durable=True)
    yield name
    channel.queue_delete(name)


def depth(channel: Any, queue: str) -> int:
    return int(channel.queue_declare(queue, passive=True).method.message_count)


def envelopes(queue: str, count: int) -> list[Envelope]:
    return [Envelope(str(uuid.uuid4()), queue, b"{}") for _ in range(count)]


def test_confirmed_messages_are_reported_and_no_thread_outlives_the_publisher(
    channel: Any, scratch_queue: str
) -> None:
    confirmed: list[str] = []
    publisher = ConfirmingPublisher(pika.URLParameters(BROKER_URL), confirmed.extend, connect_timeout=5)
    sent = envelopes(scratch_queue, 200)
    publisher.publish(sent[:1])
    publisher.publish(sent[1:])
    assert publisher.flush(10)
    assert confirmed == [e.run_id for e in sent]
    assert depth(channel, scratch_queue) == 200
    publisher.close(5)
    assert "fusion-jobs-publisher" not in publisher_threads()
    with pytest.raises(PublishError):
        publisher.publish(sent[:1])


def test_a_nacked_or_returned_message_is_not_reported(channel: Any, scratch_queue: str) -> None:
    refusing = f"fj-refusing-{uuid.uuid4().hex[:8]}"
    channel.queue_declare(refusing, arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    confirmed: list[str] = []
    publisher = ConfirmingPublisher(pika.URLParameters(BROKER_URL), confirmed.extend, connect_timeout=5)
    try:
        nacked = envelopes(refusing, 2)
        returned = envelopes(f"fj-no-such-queue-{uuid.uuid4().hex}", 2)
        fine = envelopes(scratch_queue, 2)
        publisher.publish([nacked[0], returned[0], fine[0], nacked[1], returned[1], fine[1]])
        assert publisher.flush(10)
        assert confirmed == [e.run_id for e in fine]
    finally:
        publisher.close(5)
        channel.queue_delete(refusing)


def test_a_connection_lost_before_the_confirm_reports_nothing_and_the_next_publish_reconnects(
    channel: Any, scratch_queue: str
) -> None:
    proxy = broker_proxy()
    confirmed: list[str] = []
    publisher = ConfirmingPublisher(pika.URLParameters(proxied(proxy)), confirmed.extend, connect_timeout=5)
    try:
        publisher.publish(envelopes(scratch_queue, 1))
        assert publisher.flush(10) and len(confirmed) == 1
        proxy.hold.set()  # the broker's confirms are swallowed from now on
        lost = envelopes(scratch_queue, 3)
        publisher.publish(lost)
        wait_for(lambda: depth(channel, scratch_queue) == 4, what="the messages to reach RabbitMQ")
        assert not publisher.flush(0.3)  # their confirms never arrive
        proxy.close()
        assert publisher.flush(10)  # settled: lost with the connection
        assert len(confirmed) == 1
    finally:
        proxy.close()
    # the proxy is gone: the next publish opens a new connection, which fails here
    with pytest.raises(PublishError):
        publisher.publish(envelopes(scratch_queue, 1))
    publisher.close(5)
    assert "fusion-jobs-publisher" not in publisher_threads()


def test_enqueue_many_marks_its_runs_when_confirmed_and_the_relay_leaves_them(broker_settings: str) -> None:
    purge_queues(queues=("fj-crash",))
    handles = fusion_jobs.enqueue_many("t-crashable", [{"label": f"m{i}", "seconds": 0} for i in range(30)])
    assert flush_publishes(10) and flush_marks(10)
    ids = [h.run_id for h in handles]
    assert JobRun.objects.filter(pk__in=ids, published_at__isnull=False).count() == 30
    assert relay_once(min_age=0) == 0  # nothing published twice in the normal case
    purge_queues(queues=("fj-crash",))
    reset_broker()
    stop_marking()
    assert publisher_threads() == []


def test_enqueue_many_in_a_rolled_back_transaction_enqueues_nothing(
    broker_settings: str, channel: Any
) -> None:
    purge_queues(queues=("fj-crash",))
    with pytest.raises(RuntimeError), transaction.atomic():
        handles = fusion_jobs.enqueue_many("t-crashable", [{"label": "rb", "seconds": 0}] * 5)
        raise RuntimeError("roll back")
    assert flush_publishes(5)
    assert not JobRun.objects.filter(pk__in=[h.run_id for h in handles]).exists()
    assert depth(channel, "fj-crash") == 0


def test_enqueue_many_commits_its_rows_waiting_for_the_disk(broker_settings: str) -> None:
    """Its messages are not waited for, so its rows must be durable: no asynchronous commit."""
    statements: list[str] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        fusion_jobs.enqueue_many("t-crashable", [{"label": "d", "seconds": 0}] * 3)
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
    assert inserts and not any("synchronous_commit" in s for s in statements)
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"
    flush_publishes(5)
    purge_queues(queues=("fj-crash",))


def test_a_batch_whose_confirms_are_lost_is_relayed_once_and_runs_once(
    settings: Any, make_worker: Any, channel: Any, monkeypatch: Any
) -> None:
    # What the publisher marks is recorded as it is handed to the marking thread: the table alone
    # can't tell, since any worker's relay (the session worker's) publishes these runs again, and
    # marks them, once they are MIN_AGE_SECONDS old.
    marked: list[str] = []

    def record_marks(run_ids: list[str]) -> None:
        marked.extend(run_ids)
        mark_later(run_ids)

    monkeypatch.setattr(outbox, "mark_later", record_marks)
    purge_queues(queues=("fj-crash",))
    proxy = broker_proxy()
    settings.FUSION_JOBS_BROKER_URL = proxied(proxy)
    reset_broker()
    try:
        [warm] = fusion_jobs.enqueue_many("t-crashable", [{"label": "warm", "seconds": 0}])  # connect
        assert flush_publishes(10) and marked == [warm.run_id]
        proxy.hold.set()  # the broker's confirms are swallowed from now on
        handles = fusion_jobs.enqueue_many(
            "t-crashable", [{"label": f"lost{i}", "seconds": 0} for i in range(5)]
        )
        wait_for(lambda: depth(channel, "fj-crash") == 6, what="the batch to reach RabbitMQ")
        proxy.close()
        assert flush_publishes(10) and flush_marks(10)
    finally:
        proxy.close()
        settings.FUSION_JOBS_BROKER_URL = BROKER_URL
        reset_broker()
    ids = [h.run_id for h in handles]
    assert marked == [warm.run_id]  # no lost run is marked published: each is left to the relay
    assert relay_once(min_age=0) <= 5  # each lost run published again (the warm-up one is marked)...
    assert relay_once(min_age=0) == 0  # ...once
    assert JobRun.objects.filter(pk__in=ids, published_at__isnull=False).count() == 5
    assert depth(channel, "fj-crash") == 11  # the first copies reached RabbitMQ; one relayed copy each
    make_worker(queues=("fj-crash",))
    for run_id in ids:
        wait_for(lambda run_id=run_id: JobRun.objects.get(pk=run_id).status == "succeeded", timeout=60)
    wait_for(lambda: depth(channel, "fj-crash") == 0, what="the relayed copies to be delivered too")
    time.sleep(1.0)  # the last copies taken are skipped (or, wrongly, run) by now
    for index in range(5):
        assert Marker.objects.filter(label=f"lost{index}:start").count() == 1, "a run executed twice"
    stop_marking()
