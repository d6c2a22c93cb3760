"""Payload checks and outcome sanitising as pure logic: no database, no broker.

What ``enqueue()`` must refuse at the call (with the argument path) and what a run's outcome must
be cleaned of before PostgreSQL sees it.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import pytest

from fusion_jobs.exceptions import FusionJobsError, PayloadError, TaskArgumentsError
from fusion_jobs.registry import Task
from fusion_jobs.utils import MAX_NESTING, clean_text, json_roundtrip, to_json_result


def roundtrip(kwargs: dict[str, Any]) -> dict[str, Any]:
    return json_roundtrip(kwargs, task_name="t", max_bytes=1_000_000)[0]


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr is broken")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"a": [{"b": "x\x00y"}]}, r"t: kwargs\['a'\]\[0\]\['b'\] contains a NUL character"),
        ({"a": {"k\x00": 1}}, r"t: kwargs\['a'\] key 'k\\x00' contains a NUL character"),
        ({"a": [{"b": "x\ud800"}]}, r"t: kwargs\['a'\]\[0\]\['b'\] contains a lone surrogate"),
        ({"a": {"k\udc80": 1}}, r"t: kwargs\['a'\] key 'k\\udc80' contains a lone surrogate"),
        ({"a": [2**63]}, r"t: kwargs\['a'\]\[0\] is an integer outside the signed 64-bit range"),
        ({"a": -(2**63) - 1}, r"t: kwargs\['a'\] is an integer outside the signed 64-bit range"),
        ({"a": 10**5000}, r"t: kwargs\['a'\] is an integer outside the signed 64-bit range"),
        ({"a": {"b": BadRepr()}}, r"t: kwargs\['a'\]\['b'\] is not JSON-serialisable \(BadRepr: <BadRepr"),
        ({"a": [nested(MAX_NESTING + 5)]}, rf"t: kwargs\['a'\]\[0\]\[0\].* nested deeper than {MAX_NESTING}"),
    ],
)
def test_refused_with_the_path(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        roundtrip(kwargs)


def test_nesting_far_past_the_recursion_limit_is_a_payload_error() -> None:
    with pytest.raises(PayloadError, match="nested deeper than"):
        roundtrip({"a": nested(sys.getrecursionlimit() * 2)})


def test_a_circular_reference_names_both_ends() -> None:
    loop: list[Any] = [1]
    loop.append({"back": loop})
    with pytest.raises(PayloadError, match=r"kwargs\['a'\]\[1\]\['back'\] refers back to kwargs\['a'\]"):
        roundtrip({"a": loop})


def test_what_fits_goes_through_unchanged() -> None:
    edge = {
        "ints": [2**63 - 1, -(2**63), True, 0],
        "text": "héllo \u2028 😀 \t\n",
        "deep": nested(MAX_NESTING - 1),
        "float": 1.5,
        "none": None,
        "shared": [[1], [1]],
    }
    assert roundtrip(edge) == edge


def test_the_same_list_twice_is_not_a_cycle() -> None:
    shared = [1, 2]
    assert roundtrip({"a": [shared, shared]}) == {"a": [[1, 2], [1, 2]]}


def test_clean_text_replaces_what_postgresql_cannot_store() -> None:
    assert clean_text("a\x00b\ud800c") == "a\ufffdb\ufffdc"
    assert clean_text("plain ascii") == "plain ascii"
    assert clean_text("héllo 😀") == "héllo 😀"


def storable(value: Any) -> bool:
    """What PostgreSQL's jsonb accepts: no \\u0000 escape, valid UTF-8 once encoded."""
    encoded = json.dumps(value, ensure_ascii=False)
    encoded.encode("utf-8")
    return re.search(r"(?:^|[^\\])(?:\\\\)*\\u0000", encoded) is None  # an unescaped \u0000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"text": "a\x00b", "lone": "\ud800"}, {"text": "a\ufffdb", "lone": "\ufffd"}),
        (["x\x00", {"k\x00": "v\udfff"}], ["x\ufffd", {"k\ufffd": "v\ufffd"}]),
        ("a\\u0000b", "a\\u0000b"),  # an escaped backslash, not a NUL: kept as is
        ({"n": 1, "s": "ok"}, {"n": 1, "s": "ok"}),
    ],
)
def test_result_strings_are_sanitised(value: Any, expected: Any) -> None:
    stored = to_json_result(value, 100_000)
    assert stored == expected
    assert storable(stored)


@pytest.mark.parametrize(
    "value",
    [10**5000, nested(sys.getrecursionlimit() * 2), BadRepr(), {"x": BadRepr()}, {1, "\x00"}],
    ids=["huge-int", "too-deep", "bad-repr", "bad-repr-inside", "set-with-nul"],
)
def test_any_result_is_stored_without_raising(value: Any) -> None:
    stored = to_json_result(value, 100_000)
    assert storable(stored)


def user_task(user_id: int, *, note: str = "") -> None:
    """A task function for the signature checks."""


def open_task(user_id: int, **extra: Any) -> None:
    """Takes anything besides user_id."""


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"userid": 1}, r"t-user: unexpected argument 'userid' \(did you mean 'user_id'\?\)"),
        ({}, r"t-user: missing required argument 'user_id'"),
        ({"user_id": 1, "extra": 2}, r"t-user: unexpected argument 'extra'; it takes user_id, note"),
    ],
)
def test_arguments_that_do_not_fit(kwargs: dict[str, Any], message: str) -> None:
    task = Task(fn=user_task, name="t-user")
    with pytest.raises(TaskArgumentsError, match=message) as caught:
        task.check_arguments(kwargs)
    assert isinstance(caught.value, FusionJobsError) and isinstance(caught.value, TypeError)


def test_arguments_that_fit() -> None:
    Task(fn=user_task, name="t-user").check_arguments({"user_id": 1, "note": "x"})
    Task(fn=open_task, name="t-open").check_arguments({"user_id": 1, "anything": 2})
    with pytest.raises(TaskArgumentsError, match="missing required argument 'user_id'"):
        Task(fn=open_task, name="t-open").check_arguments({"anything": 2})


def test_label_names_where_the_arguments_came_from() -> None:
    with pytest.raises(TaskArgumentsError, match=r"^t-user \(item 3\): missing"):
        Task(fn=user_task, name="t-user").check_arguments({}, label="t-user (item 3)")
