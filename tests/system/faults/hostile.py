"""Publishing hand-made messages to queue "fj-hostile", as anyone with access to the vhost could."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pika

from tests.conftest import BROKER_URL

QUEUE = "fj-hostile"


def message(actor: str, kwargs: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A Dramatiq message as fusion-jobs publishes it; ``fields`` replace or add top-level fields."""
    return {
        "queue_name": QUEUE,
        "actor_name": actor,
        "args": [],
        "kwargs": kwargs,
        "options": {},
        "message_id": str(uuid.uuid4()),
        "message_timestamp": int(time.time() * 1000),
        **fields,
    }


def publish(*bodies: dict[str, Any] | bytes, queue: str = QUEUE) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(BROKER_URL))
    try:
        channel = connection.channel()
        for body in bodies:
            data = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
            channel.basic_publish("", queue, data, pika.BasicProperties(delivery_mode=2))
    finally:
        connection.close()


def message_count(queue: str) -> int:
    """Messages ready in ``queue`` (0 when it is not declared yet)."""
    connection = pika.BlockingConnection(pika.URLParameters(BROKER_URL))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    except pika.exceptions.ChannelClosedByBroker:
        return 0
    finally:
        if connection.is_open:
            connection.close()
