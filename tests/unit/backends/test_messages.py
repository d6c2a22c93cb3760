"""A run's message: ``encode_message`` gives exactly Dramatiq's bytes, faster, and defers to any other encoder."""

from __future__ import annotations

import uuid
from typing import Any

import dramatiq
import pytest
from dramatiq.encoder import JSONEncoder

from fusion_jobs.backends.messages import build_message, encode_message
from fusion_jobs.encoder import StrictJSONEncoder
from fusion_jobs.registry import get_task


@pytest.mark.parametrize(
    ("kwargs", "options"),
    [
        ({"label": "plain"}, {}),
        ({"label": "ünïcode ☃ \u2028", "n": [1, 2.5, None, True], "deep": {"a": {"b": []}}}, {"retries": 3}),
        ({}, {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}),
    ],
)
@pytest.mark.parametrize("encoder", [JSONEncoder(), StrictJSONEncoder()])
def test_the_same_bytes_as_dramatiqs_encode(
    kwargs: dict[str, Any], options: dict[str, Any], encoder: Any
) -> None:
    before = dramatiq.get_encoder()
    dramatiq.set_encoder(encoder)
    try:
        message = build_message(get_task("t-record"), str(uuid.uuid4()), kwargs, options, level=5)
        assert encode_message(message) == message.encode()
    finally:
        dramatiq.set_encoder(before)


def test_another_encoder_does_its_own_encoding() -> None:
    class Marked(JSONEncoder):
        def encode(self, data: dict[str, Any]) -> bytes:
            return b"marked:" + super().encode(data)

    before = dramatiq.get_encoder()
    dramatiq.set_encoder(Marked())
    try:
        message = build_message(get_task("t-record"), str(uuid.uuid4()), {"label": "x"})
        assert encode_message(message).startswith(b"marked:")
    finally:
        dramatiq.set_encoder(before)
