"""Quorum queues (FUSION_JOBS_QUEUE_TYPE=quorum) on the real RabbitMQ, and moving queues to them.

Before: every queue was classic; a RabbitMQ cluster could not replicate them, and a queue's type
cannot change in place (a redeclare with ``x-queue-type: quorum`` is refused with 406), so
switching meant deleting queues with their waiting messages by hand.
Each test works in its own queue namespace in the test vhost and deletes its queues after.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pika
import pytest
from django.core import checks
from django.core.management import call_command

import fusion_jobs
from fusion_jobs.backends import queues as q
from fusion_jobs.backends.broker import reset_broker
from fusion_jobs.conf import broker_queue
from fusion_jobs.exceptions import PublishError
from tests.conftest import BROKER_URL, ROOT

pytestmark = [pytest.mark.broker]


def _connection() -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.URLParameters(BROKER_URL))


@pytest.fixture
def namespace(settings: Any) -> Iterator[str]:
    """Jobs on, in a fresh queue namespace; its queues (and holding queues) deleted after."""
    name = f"fjq{uuid.uuid4().hex[:8]}"
    settings.FUSION_JOBS_QUEUE_TYPE = "classic"  # the tests switch to quorum (also in the quorum pass)
    settings.FUSION_JOBS_BROKER_URL = BROKER_URL
    settings.FUSION_JOBS_QUEUE_NAMESPACE = name
    settings.FUSION_JOBS_ON_PUBLISH_ERROR = "raise"
    reset_broker()
    yield name
    reset_broker()
    connection = _connection()
    try:
        for queue in ("default", "fj-crash"):
            for suffix in ("", ".DQ", ".XQ"):
                for extra in ("", q.HOLDING_SUFFIX):
                    connection.channel().queue_delete(f"{name}.{queue}{suffix}{extra}")
    finally:
        connection.close()


def _count(queue: str) -> int:
    connection = _connection()
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


def _declares(queue: str, arguments: dict[str, Any]) -> bool:
    connection = _connection()
    try:
        q.declare(connection.channel(), queue, arguments)
        return True
    except q.QueueMismatch:
        return False
    finally:
        if connection.is_open:
            connection.close()


def _bodies(queue: str) -> list[bytes]:
    """Every message body in ``queue`` (got and requeued, so the queue keeps them)."""
    connection = _connection()
    try:
        channel = connection.channel()
        bodies = []
        while True:
            method, _, body = channel.basic_get(queue)
            if method is None:
                break
            bodies.append(body)
        return bodies  # unacked: returned to the queue when the connection closes
    finally:
        connection.close()


def _enqueue(n: int) -> list[str]:
    return [str(fusion_jobs.enqueue("t-crashable", label=f"q{i}", seconds=0).run_id) for i in range(n)]


@pytest.mark.django_db(transaction=True)
def test_quorum_queues_are_declared_with_a_delivery_limit_that_dead_letters(namespace, settings):
    settings.FUSION_JOBS_QUEUE_TYPE = "quorum"
    settings.FUSION_JOBS_DELIVERY_LIMIT = 2
    reset_broker()
    (run_id,) = _enqueue(1)
    queue = broker_queue("fj-crash")
    # The queue is a quorum queue: RabbitMQ refuses to see it as classic.
    assert not _declares(queue, {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue + ".XQ"})
    assert _declares(queue, q.main_arguments(queue))
    # A message handed back three times (a worker dying with it each time) is dead-lettered.
    connection = _connection()
    try:
        channel = connection.channel()
        for _ in range(3):
            method, _, body = channel.basic_get(queue)
            assert method is not None and run_id.encode() in body
            channel.basic_nack(method.delivery_tag, requeue=True)
        assert channel.basic_get(queue)[0] is None
    finally:
        connection.close()
    assert any(run_id.encode() in body for body in _bodies(queue + ".XQ"))


def test_quorum_with_priorities_is_refused_by_a_check(settings):
    settings.FUSION_JOBS_QUEUE_TYPE = "quorum"
    settings.FUSION_JOBS_MAX_PRIORITY = 5
    errors = [e for e in checks.run_checks() if e.id == "fusion_jobs.E030"]
    assert len(errors) == 1 and "x-max-priority" in errors[0].msg
    settings.FUSION_JOBS_MAX_PRIORITY = 0
    assert not [e for e in checks.run_checks() if e.id == "fusion_jobs.E030"]
    settings.FUSION_JOBS_QUEUE_TYPE = "stream"
    assert [e for e in checks.run_checks() if "FUSION_JOBS_QUEUE_TYPE" in e.msg]


@pytest.mark.django_db(transaction=True)
def test_publishing_to_a_classic_queue_as_quorum_fails_with_the_migration(namespace, settings):
    _enqueue(1)  # classic queues exist now
    settings.FUSION_JOBS_QUEUE_TYPE = "quorum"
    reset_broker()
    with pytest.raises(PublishError, match="migratequeues"):
        _enqueue(1)


@pytest.mark.django_db(transaction=True)
def test_worker_refuses_to_start_on_a_queue_of_the_other_type(namespace, test_db_name):
    _enqueue(1)  # classic queues exist now
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "FUSION_JOBS_TEST_DB": test_db_name,
        "FUSION_JOBS_WORKER_BROKER_URL": BROKER_URL,
        "FUSION_JOBS_QUEUE_NAMESPACE": namespace,
        "FUSION_JOBS_QUEUE_TYPE": "quorum",
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "rundramatiq", "-p", "1", "-t", "1", "--queues", "fj-crash"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "inequivalent arg 'x-queue-type'" in output and "manage.py migratequeues" in output, output
    assert output.count("Traceback") == 0, output


@pytest.mark.django_db(transaction=True)
def test_migratequeues_moves_waiting_messages_into_quorum_queues(namespace, settings):
    run_ids = _enqueue(5)
    queue = broker_queue("fj-crash")
    before = sorted(_bodies(queue))
    assert len(before) == 5
    settings.FUSION_JOBS_QUEUE_TYPE = "quorum"
    reset_broker()
    call_command("migratequeues", queues=["fj-crash"])
    assert _declares(queue, q.main_arguments(queue))
    assert _declares(queue + ".XQ", q.dead_letter_arguments())
    assert sorted(_bodies(queue)) == before
    assert all(any(r.encode() in b for b in before) for r in run_ids)
    # Idempotent: a second run finds nothing to do.
    call_command("migratequeues", queues=["fj-crash"])
    assert _count(queue) == 5
    _enqueue(1)  # publishing works again
    assert _count(queue) == 6


class _Stop(Exception):
    pass


def _stop_after(n: int) -> Any:
    seen = [0]

    def hook() -> None:
        seen[0] += 1
        if seen[0] == n:
            raise _Stop

    return hook


@pytest.mark.parametrize("stop_at", [2, 7], ids=["while-parking", "while-refilling"])
@pytest.mark.django_db(transaction=True)
def test_a_migration_stopped_midway_loses_nothing_when_rerun(namespace, settings, stop_at):
    _enqueue(5)
    queue = broker_queue("fj-crash")
    before = sorted(_bodies(queue))
    settings.FUSION_JOBS_QUEUE_TYPE = "quorum"
    reset_broker()
    arguments = q.main_arguments(queue)
    connection = _connection()
    try:
        with pytest.raises(_Stop):  # a stop after 2 of 5 parked, or 2 of 5 moved into the new queue
            q.migrate_queue(connection, queue, arguments, on_moved=_stop_after(stop_at))
    finally:
        if connection.is_open:
            connection.close()
    assert _count(queue + q.HOLDING_SUFFIX) == (2 if stop_at == 2 else 3)
    connection = _connection()
    try:
        done = q.migrate_queue(connection, queue, arguments)
    finally:
        connection.close()
    assert done.moved == (5 if stop_at == 2 else 3)
    assert sorted(_bodies(queue)) == before
    assert _declares(queue, arguments)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):  # the holding queue is gone
        _count(queue + q.HOLDING_SUFFIX)
