"""The worker's checks on a message, without services: its shape, and failing closed around the hooks."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from typing import Any

import pytest
from django.db import DataError, OperationalError
from dramatiq import Message
from dramatiq.broker import MessageProxy
from dramatiq.common import dq_name
from dramatiq.errors import DecodeError
from dramatiq.middleware import Middleware, SkipMessage
from dramatiq.worker import WorkerThread

from fusion_jobs import encoder
from fusion_jobs.middleware import hard_limit, lifecycle, validation
from fusion_jobs.recording import Attempt, Skip
from fusion_jobs.registry import get_task

LIMIT = 1000


@pytest.fixture(autouse=True)
def no_recording(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Rejections are recorded in the database elsewhere (tests/system/faults); here only collected."""
    recorded: list[tuple[str, Any]] = []

    def record(reason: str, data: bytes, fields: Any) -> None:
        recorded.append((reason, fields))

    monkeypatch.setattr(encoder, "record_malformed", record)
    monkeypatch.setattr(validation, "record_malformed", record)
    return recorded


def fields(**changes: Any) -> dict[str, Any]:
    task_obj = get_task("t-hostile-record")
    return {
        "queue_name": task_obj.effective_queue,
        "actor_name": task_obj.name,
        "args": [],
        "kwargs": {"label": "ok", "nested": {"list": [1, 2.5, None, True, "text é 漢"]}},
        "options": {},
        "message_id": str(uuid.uuid4()),
        "message_timestamp": 1,
        **changes,
    }


def test_a_message_as_fusion_jobs_publishes_it_passes():
    assert check(fields()) == ""
    delayed = fields(options={"retries": 2, "eta": 1_700_000_000_000})
    delayed["queue_name"] = dq_name(delayed["queue_name"])
    assert check(delayed) == ""


def check(message: dict[str, Any]) -> str:
    return encoder.check_fields(message, max_payload_bytes=LIMIT)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"message_id": "not-a-uuid"}, "message_id 'not-a-uuid' is not a run id"),
        ({"message_id": str(uuid.uuid4()).upper()}, "is not a run id"),
        ({"actor_name": "t-nope"}, "unknown task 't-nope'"),
        ({"queue_name": "default"}, "queue_name 'default' is not task"),
        ({"args": [1]}, "positional args are not accepted"),
        ({"priority": 1}, "unexpected field(s) 'priority'"),
        ({"message_timestamp": True}, "wrong type: message_timestamp"),
        ({"message_timestamp": 10**400}, "message_timestamp is not epoch milliseconds"),
        ({"message_timestamp": -1}, "message_timestamp is not epoch milliseconds"),
        ({"options": {"throws": "ValueError"}}, "option(s) 'throws' not accepted"),
        ({"options": {"time_limit": 999_999}}, "option(s) 'time_limit' not accepted"),
        ({"options": {"max_retries": 99}}, "option(s) 'max_retries' not accepted"),
        ({"options": {"retry_when": "x"}}, "option(s) 'retry_when' not accepted"),
        ({"options": {"retries": "2"}}, "option 'retries' must be int, not str"),
        ({"options": {"retries": True}}, "option 'retries' must be int, not bool"),
        ({"options": {"retries": -1}}, "option 'retries' is -1"),
        ({"options": {"eta": "tomorrow"}}, "option 'eta' must be int, not str"),
        ({"options": {"broker_priority": 256}}, "option 'broker_priority' is 256, not between 0 and 255"),
        ({"options": {"broker_priority": -1}}, "option 'broker_priority' is -1"),
        ({"kwargs": {"a": "x\x00y"}}, "kwargs['a'] contains a NUL"),
        ({"kwargs": {"a": ["\ud800"]}}, "kwargs['a'][0] contains a NUL or a lone surrogate"),
        ({"kwargs": {"k\x00": 1}}, "a key in kwargs contains a NUL"),
        ({"kwargs": {"f": float("inf")}}, "kwargs['f'] is inf"),
        ({"kwargs": {"big": "x" * LIMIT}}, f"over the {LIMIT:,}-byte limit (FUSION_JOBS_MAX_PAYLOAD_BYTES)"),
    ],
)
def test_anything_else_is_refused_with_the_reason(changes, expected):
    assert expected in check(fields(**changes))


def test_nesting_too_deep_for_the_parser_is_a_rejection_not_a_crash(no_recording):
    body = b'{"kwargs":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(DecodeError):
        encoder.StrictJSONEncoder().decode(body)
    assert "RecursionError" in no_recording[0][0]


def test_nesting_the_parser_takes_but_nothing_after_it_can_is_a_rejection(no_recording):
    """Nesting just under the parser's limit used to pass ``json.loads`` and then raise
    ``RecursionError`` out of the checks (a traceback, no failed run), or in any later
    ``json.dumps`` of the message; past ``enqueue()``'s own limit (``MAX_NESTING``) it is refused."""
    for depth in [*range(101, 120), *range(900, 1100)]:
        body = (
            json.dumps(fields())
            .encode()
            .replace(b'"label"', b'"deep":' + b"[" * depth + b"]" * depth + b',"label"', 1)
        )
        with pytest.raises(DecodeError) as caught:
            encoder.StrictJSONEncoder().decode(body)
        assert isinstance(caught.value.error, encoder.MessageRejected), (depth, caught.value.error)
    assert all(
        "nested deeper than 100 levels" in reason or "RecursionError" in reason for reason, _ in no_recording
    )
    assert check(fields(kwargs={"label": "x", "deep": json.loads("[" * 99 + "]" * 99)})) == ""


def test_an_oversized_message_is_refused_unparsed_and_its_id_kept(no_recording, settings):
    settings.FUSION_JOBS_MAX_PAYLOAD_BYTES = LIMIT
    message = fields(kwargs={"blob": "x" * (LIMIT * 40)})
    with pytest.raises(DecodeError):
        encoder.StrictJSONEncoder().decode(json.dumps(message, separators=(",", ":")).encode())
    reason, found = no_recording[0]
    assert "over what FUSION_JOBS_MAX_PAYLOAD_BYTES=1,000 allows" in reason
    assert found == {k: message[k] for k in ("message_id", "actor_name", "queue_name")}


def proxy(**changes: Any) -> MessageProxy:
    data = fields(**changes)
    data["args"] = tuple(data["args"])
    return MessageProxy(Message(**data))


class _Broker:
    def __init__(self, *middleware: Middleware) -> None:
        self.middleware = list(middleware)


class _Raises(Middleware):
    def before_process_message(self, broker: Any, message: Any) -> None:
        raise ValueError("boom")


class _Skips(Middleware):
    def before_process_message(self, broker: Any, message: Any) -> None:
        raise SkipMessage("not now")


class _Counts(Middleware):
    calls = 0

    def before_process_message(self, broker: Any, message: Any) -> None:
        self.calls += 1


def test_a_hook_that_raises_refuses_the_message_instead_of_running_it(no_recording):
    message, after = proxy(), _Counts()
    with pytest.raises(SkipMessage):
        validation.before_process_fail_closed(_Broker(_Raises(), after), message)  # type: ignore[arg-type]
    assert message.failed  # Dramatiq neither runs nor acks a failed message: it is dead-lettered
    assert after.calls == 0
    assert "_Raises could not admit it (ValueError: boom)" in no_recording[0][0]


def test_skip_keeps_its_meaning_and_clean_hooks_all_run():
    message = proxy()
    with pytest.raises(SkipMessage):
        validation.before_process_fail_closed(_Broker(_Skips()), message)  # type: ignore[arg-type]
    assert not message.failed
    first, second = _Counts(), _Counts()
    validation.before_process_fail_closed(_Broker(first, second), message)  # type: ignore[arg-type]
    assert (first.calls, second.calls) == (1, 1)


class _Actor:
    options = {"time_limit": 1000}


class _ActorBroker:
    actors = {"t-hostile-record": _Actor()}


def test_the_hard_limit_watches_each_delivery_and_ignores_a_message_time_limit():
    limit = hard_limit.HardTimeLimit(lifecycle.RunLifecycle())
    running, duplicate = proxy(), proxy()
    duplicate._message = running._message  # same message id, a second delivery
    running.options["time_limit"] = 10_000_000  # (the encoder refuses this; the hard limit ignores it too)
    limit.before_process_message(_ActorBroker(), running)  # type: ignore[arg-type]
    limit.before_process_message(_ActorBroker(), duplicate)  # type: ignore[arg-type]
    limit.after_skip_message(_ActorBroker(), duplicate)  # type: ignore[arg-type]
    ((deadline, seconds, message),) = limit._running.values()
    assert message is running and seconds == 1.0
    assert deadline < time.monotonic() + 1.0 + 3600


def test_a_worker_thread_that_dies_records_its_run_and_ends_the_process(monkeypatch):
    recorded: list[tuple[int, BaseException]] = []
    exits: list[int] = []
    runs = lifecycle.RunLifecycle()
    monkeypatch.setattr(runs, "record_thread_death", lambda ident, exc: recorded.append((ident, exc)))
    monkeypatch.setattr(hard_limit.os, "_exit", exits.append)
    monkeypatch.setattr(hard_limit.logging, "shutdown", lambda: None)
    monkeypatch.setattr(threading, "excepthook", lambda args: None)
    hard_limit.HardTimeLimit(runs).before_worker_boot(None, None)  # type: ignore[arg-type]

    class Dying(WorkerThread):
        def run(self) -> None:
            self.running = True
            raise TypeError("isinstance() arg 2 must be a type")

    thread = Dying(broker=None, consumers={}, work_queue=queue.PriorityQueue(), worker_timeout=100)  # type: ignore[arg-type]
    thread.start()
    thread.join(5)
    assert [type(exc) for _, exc in recorded] == [TypeError]
    assert recorded[0][0] == thread.ident
    assert exits == [hard_limit.THREAD_DIED_EXIT]


class _Writer:
    """Stands in for the batch writer: starts the first delivery of a run, skips later ones."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.started: set[str] = set()

    def apply(self, op: Any) -> Any:
        if self.error is not None:
            raise self.error
        if op.run_id in self.started:
            op.outcome = Skip("a live attempt is already running this run (duplicate delivery)")
        else:
            self.started.add(op.run_id)
            op.outcome = Attempt(op.run_id, 1, op.task_name)
        return op


@pytest.fixture
def outcomes(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    written: list[Any] = []
    monkeypatch.setattr(lifecycle, "_write_outcome", lambda op: written.append(op) or True)
    return written


def test_a_skipped_duplicate_delivery_leaves_the_running_ones_outcome(monkeypatch, outcomes):
    monkeypatch.setattr(lifecycle, "writer", _Writer())
    middleware = lifecycle.RunLifecycle()
    running, duplicate = proxy(), proxy()
    duplicate._message = running._message
    middleware.before_process_message(None, running)  # type: ignore[arg-type]
    with pytest.raises(SkipMessage):
        middleware.before_process_message(None, duplicate)  # type: ignore[arg-type]
    middleware.after_skip_message(None, duplicate)  # type: ignore[arg-type]
    middleware.after_process_message(None, running, result=None)  # type: ignore[arg-type]
    assert [op.status for op in outcomes] == ["succeeded"]
    assert outcomes[0].attempt.run_id == running.message_id


def test_a_data_error_on_start_is_a_bad_message_not_an_outage(monkeypatch, no_recording):
    monkeypatch.setattr(lifecycle, "writer", _Writer(DataError("unsupported Unicode escape sequence")))
    monkeypatch.setattr(
        lifecycle, "record_malformed", lambda reason, data, fields: no_recording.append((reason, fields))
    )
    requeued: list[Any] = []
    monkeypatch.setattr(lifecycle, "requeue_for_db_outage", lambda *args: requeued.append(args))
    message = proxy()
    with pytest.raises(SkipMessage):
        lifecycle.RunLifecycle().before_process_message(None, message)  # type: ignore[arg-type]
    assert message.failed and not requeued
    assert "the database cannot store its arguments (DataError" in no_recording[0][0]


def test_an_outage_on_start_is_still_requeued(monkeypatch):
    monkeypatch.setattr(lifecycle, "writer", _Writer(OperationalError("connection refused")))

    def requeue(broker: Any, message: Any, exc: BaseException, doing: str) -> None:
        raise SkipMessage("database unavailable")

    monkeypatch.setattr(lifecycle, "requeue_for_db_outage", requeue)
    message = proxy()
    with pytest.raises(SkipMessage, match="database unavailable"):
        lifecycle.RunLifecycle().before_process_message(None, message)  # type: ignore[arg-type]
    assert not message.failed
