"""Poison and malformed messages published by hand: dead-lettered with a recorded reason; the worker goes on."""

from __future__ import annotations

import json
import uuid

import pika
import pytest

import fusion_jobs
from fusion_jobs.models import JobRun
from tests.conftest import BROKER_URL, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]


def dead_letters(channel) -> int:
    return channel.queue_declare("default.XQ", passive=True).method.message_count


def test_malformed_and_unknown_messages_are_dead_lettered(worker, broker_settings):
    connection = pika.BlockingConnection(pika.URLParameters(BROKER_URL))
    channel = connection.channel()
    try:
        before = dead_letters(channel)
        unknown_id = str(uuid.uuid4())
        bodies = [
            b"\xff\xfe\x00 not utf-8",
            b"this is not json",
            json.dumps([1, 2, 3]).encode(),
            json.dumps({"queue_name": "default", "actor_name": "t-record"}).encode(),
            json.dumps(
                {
                    "queue_name": "default",
                    "actor_name": "t-no-such-task",
                    "args": [],
                    "kwargs": {},
                    "options": {},
                    "message_id": unknown_id,
                    "message_timestamp": 0,
                }
            ).encode(),
        ]
        for body in bodies:
            channel.basic_publish("", "default", body, pika.BasicProperties(delivery_mode=2))
        wait_for(
            lambda: dead_letters(channel) - before >= len(bodies), what="all five in the dead-letter queue"
        )
    finally:
        connection.close()

    errors = sorted(
        JobRun.objects.filter(error__startswith="MalformedMessage").values_list("error", flat=True)
    )
    assert len(errors) == 5
    assert any("not UTF-8" in e for e in errors)
    assert any("not JSON" in e for e in errors)
    assert any("JSON list, not an object" in e for e in errors)
    assert any("missing field(s) args, kwargs, options, message_id, message_timestamp" in e for e in errors)
    unknown = JobRun.objects.get(pk=unknown_id)
    assert unknown.status == "failed" and "unknown task 't-no-such-task'" in unknown.error

    # The worker keeps consuming.
    handle = fusion_jobs.enqueue("t-record", label="after-poison")
    wait_for(
        lambda: JobRun.objects.filter(pk=handle.run_id, status="succeeded").exists(), what="a normal run"
    )
