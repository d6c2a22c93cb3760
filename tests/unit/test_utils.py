from __future__ import annotations

import pytest

from fusion_jobs.exceptions import PayloadError
from fusion_jobs.utils import json_roundtrip, mask_url, scrub, to_json_result


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("amqp://guest:s3cret@127.0.0.1:5672/", "amqp://guest:***@127.0.0.1:5672/"),
        ("amqps://u:p%40ss@host/vhost", "amqps://u:***@host/vhost"),
        ("amqp://127.0.0.1:5672/", "amqp://127.0.0.1:5672/"),
        ("", None),
    ],
)
def test_mask_url(url, masked):
    assert mask_url(url) == masked


def test_scrub_removes_the_password_anywhere():
    url = "amqp://guest:hunter2-sentinel@127.0.0.1:5672/"
    assert "hunter2" not in scrub(f"connect to {url} failed (hunter2-sentinel)", url)


def test_roundtrip_names_the_nested_path():
    with pytest.raises(
        PayloadError, match=r"kwargs\['opts'\]\['items'\]\[1\] is not JSON-serialisable \(set"
    ):
        json_roundtrip({"opts": {"items": [1, {2}]}}, task_name="t", max_bytes=1000)


def test_roundtrip_rejects_non_string_keys_and_nan():
    with pytest.raises(PayloadError, match=r"kwargs\['m'\] key 1"):
        json_roundtrip({"m": {1: "a"}}, task_name="t", max_bytes=1000)
    with pytest.raises(PayloadError, match=r"kwargs\['x'\]"):
        json_roundtrip({"x": float("nan")}, task_name="t", max_bytes=1000)


def test_roundtrip_turns_tuples_into_lists():
    payload, size = json_roundtrip({"pair": (1, 2)}, task_name="t", max_bytes=1000)
    assert payload == {"pair": [1, 2]}
    assert size == len('{"pair":[1,2]}')


def test_roundtrip_size_limit_gives_the_size():
    with pytest.raises(PayloadError, match=r"arguments are 1,0\d\d bytes of JSON, over the 1,000-byte limit"):
        json_roundtrip({"blob": "x" * 1000}, task_name="t", max_bytes=1000)


def test_results_are_json_or_repr_and_truncated():
    assert to_json_result({"a": 1}, 100) == {"a": 1}
    assert to_json_result({1, 2}, 100) == {"repr": "{1, 2}"}
    big = to_json_result("x" * 5000, 1000)
    assert big["truncated"] is True and big["size"] == 5002
