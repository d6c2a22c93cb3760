"""The traceparent option as the worker's decoder checks it, and the W3C shape it parses.

Spans inline and across processes: tests/integration/test_tracing.py.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from dramatiq.common import dq_name

from fusion_jobs import encoder, tracing
from fusion_jobs.registry import get_task

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def message_fields(**options: Any) -> dict[str, Any]:
    task_obj = get_task("t-hostile-record")
    return {
        "queue_name": task_obj.effective_queue,
        "actor_name": task_obj.name,
        "args": [],
        "kwargs": {"label": "x"},
        "options": options,
        "message_id": str(uuid.uuid4()),
        "message_timestamp": 1,
    }


def test_a_valid_traceparent_option_passes_the_decoder():
    assert encoder.check_fields(message_fields(traceparent=VALID), max_payload_bytes=1000) == ""
    delayed = message_fields(traceparent=VALID, retries=1, eta=1)
    delayed["queue_name"] = dq_name(delayed["queue_name"])
    assert encoder.check_fields(delayed, max_payload_bytes=1000) == ""


@pytest.mark.parametrize(
    "value",
    [
        VALID + "-extra",  # a future version's fields: not what fusion-jobs writes
        VALID.upper(),
        "ff" + VALID[2:],  # version ff is invalid
        "01" + VALID[2:],
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
        VALID[:-1] + "\n",
        VALID + "\x00",
        " " + VALID[1:],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01;x=1",
        "x" * 100_000,
        "",
        12,
        None,
        ["00"],
        {"traceparent": VALID},
        True,
    ],
)
def test_a_hostile_traceparent_is_refused_by_the_decoder(value):
    reason = encoder.check_fields(message_fields(traceparent=value), max_payload_bytes=1000)
    assert reason.startswith("option 'traceparent'"), reason
    assert len(reason) < 200  # never echoes a long hostile value


def test_tracestate_and_other_trace_options_stay_refused():
    reason = encoder.check_fields(message_fields(traceparent=VALID, tracestate="a=b"), max_payload_bytes=1000)
    assert "'tracestate'" in reason and "not accepted" in reason


def test_parse_traceparent_takes_only_the_w3c_shape():
    assert tracing.parse_traceparent(VALID) == (
        0x4BF92F3577B34DA6A3CE929D0E0E4736,
        0x00F067AA0BA902B7,
        1,
    )
    assert tracing.parse_traceparent(VALID + "x") is None
    assert tracing.parse_traceparent(b"00-4bf9") is None
