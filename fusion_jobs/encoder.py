"""Dramatiq's JSON encoding, strict on the way in: a bad message is recorded, then dead-lettered.

Anyone who can publish to the vhost can put bytes on a queue, so every message is checked here,
as it is decoded in the consumer thread: before Dramatiq reads a single option (``eta``,
``throws``, ``time_limit``), before middleware and before task code. A message passes only if it
has exactly the shape fusion-jobs publishes: a canonical UUID ``message_id`` (the run id), a
registered task on its own queue, no positional arguments, only the options fusion-jobs writes
(each of its type), keyword arguments PostgreSQL can store (no NUL, no lone surrogate, finite
numbers) and within ``FUSION_JOBS_MAX_PAYLOAD_BYTES``. Anything else raises ``DecodeError``, which
Dramatiq turns into a reject to the queue's dead-letter queue (``<queue>.XQ``), and leaves a
``failed`` run saying why. JSON only: there is no pickle fallback.
"""

from __future__ import annotations

import json
import logging
import math
import re
import uuid
from typing import Any

from django.db import close_old_connections, transaction
from django.utils import timezone
from dramatiq.common import dq_name
from dramatiq.encoder import JSONEncoder
from dramatiq.errors import DecodeError

from .conf import jobs_settings
from .exceptions import TaskArgumentsError, UnknownTaskError
from .models import JobRun, RunStatus
from .recording import db_alias
from .registry import get_task
from .tracing import traceparent_problem
from .utils import MAX_NESTING

logger = logging.getLogger("fusion_jobs.worker")

REQUIRED = {
    "queue_name": str,
    "actor_name": str,
    "args": list,
    "kwargs": dict,
    "options": dict,
    "message_id": str,
    "message_timestamp": int,
}

#: The options fusion-jobs (and Dramatiq's ``enqueue(delay=...)`` on its behalf) writes, with their
#: types. Nothing else is accepted: an option such as ``time_limit``, ``max_retries``, ``throws`` or
#: ``retry_when`` would let a message lengthen its task's limits or change what is retried. Limits
#: and retryability come from the registered task only.
OPTIONS: dict[str, type] = {"retries": int, "eta": int, "broker_priority": int, "traceparent": str}
#: ``retries`` counts retries already done; the run's attempts column is a 32-bit integer.
MAX_RETRIES_OPTION = 2**31 - 1
#: ``broker_priority`` is published as the AMQP priority, one octet: pika can't encode anything else
#: (Dramatiq republishes a delayed message with it, in the consumer thread).
MAX_BROKER_PRIORITY = 255
#: ``message_timestamp`` is epoch milliseconds, a 64-bit integer as Dramatiq writes it.
MAX_TIMESTAMP = 2**63 - 1
#: Room for everything but the arguments: ids, names, options.
ENVELOPE_BYTES = 16 * 1024
#: Dramatiq's encoder escapes non-ASCII; one UTF-8 byte of argument takes at most 6 bytes on the wire.
ESCAPE_FACTOR = 6

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
#: What PostgreSQL cannot store in text or jsonb: NUL, and UTF-16 halves without their pair.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_ID_FIELD = re.compile(rb'"message_id"\s*:\s*"([0-9a-f-]{36})"')
_NAME_FIELD = re.compile(rb'"(actor_name|queue_name)"\s*:\s*"([A-Za-z0-9_.:<>-]{1,200})"')


class MessageRejected(ValueError):
    """Why a message is refused; carried as the ``DecodeError``'s ``error``."""


def _sizeof(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))


def _unstorable(value: Any, path: str) -> str:
    """The path of the first value PostgreSQL cannot store, with why; "" when all can be stored.

    Iterative, so a deeply nested payload cannot exhaust the stack. Nesting past ``MAX_NESTING``
    (what ``enqueue()`` refuses) is refused too: ``json.loads`` takes nesting that every later
    ``json.dumps`` of the message, a few frames deeper, fails on with ``RecursionError``.
    """
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, dict | list) and depth >= MAX_NESTING:
            return f"{where[:200]} is nested deeper than {MAX_NESTING} levels"
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                return f"{where} contains a NUL or a lone surrogate, which PostgreSQL cannot store"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{where} is {item!r}, which JSON cannot carry"
        elif isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                if _UNSTORABLE.search(key):
                    return (
                        f"a key in {where} contains a NUL or a lone surrogate, which PostgreSQL cannot store"
                    )
                stack.append((child, f"{where}[{key!r}]", depth + 1))
        elif isinstance(item, list):
            stack.extend(
                (child, f"{where}[{index}]", depth + 1) for index, child in reversed(list(enumerate(item)))
            )
    return ""


def check_fields(fields: dict[str, Any], *, max_payload_bytes: int) -> str:
    """Why a decoded message must not run, or "" when it has exactly the shape fusion-jobs publishes."""
    missing = [key for key in REQUIRED if key not in fields]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    extra = sorted(repr(key) for key in fields if key not in REQUIRED)
    if extra:
        return f"unexpected field(s) {', '.join(extra)}"
    wrong = [
        key
        for key, kind in REQUIRED.items()
        if not isinstance(fields[key], kind) or (kind is int and isinstance(fields[key], bool))
    ]
    if wrong:
        return f"field(s) of the wrong type: {', '.join(wrong)}"
    if not 0 <= fields["message_timestamp"] <= MAX_TIMESTAMP:
        # The metrics hook turns it into seconds: a float must hold it.
        return f"message_timestamp is not epoch milliseconds (0 to {MAX_TIMESTAMP})"
    if not _UUID.match(fields["message_id"]):
        return f"message_id {fields['message_id'][:100]!r} is not a run id (a UUID in canonical form)"
    try:
        task_obj = get_task(fields["actor_name"])
    except UnknownTaskError:
        return f"unknown task {fields['actor_name'][:200]!r}"
    queue = task_obj.effective_queue
    if fields["queue_name"] not in (queue, dq_name(queue)):
        return f"queue_name {fields['queue_name'][:100]!r} is not task {task_obj.name!r}'s queue {queue!r}"
    options = fields["options"]
    if task_obj.binds_positional:
        # A plain Dramatiq actor's message (sent before the switch to fusion-jobs, or by plain
        # Dramatiq code): its positional arguments become keywords, and the traceback Dramatiq's
        # Retries middleware writes on a failed attempt is dropped. Limits stay the task's.
        if not isinstance(options.get("traceback", ""), str):
            return "option 'traceback' must be str"
        options.pop("traceback", None)
        if fields["args"]:
            try:
                fields["kwargs"] = task_obj.bind_positional(fields["args"], fields["kwargs"])
            except TaskArgumentsError as exc:
                return str(exc)[:500]
            fields["args"] = []
    if fields["args"]:
        return "positional args are not accepted (fusion-jobs tasks take keyword arguments)"
    unknown = sorted(repr(key[:50]) for key in options if key not in OPTIONS)
    if unknown:
        return f"option(s) {', '.join(unknown)} not accepted (only {', '.join(OPTIONS)})"
    for name, value in options.items():
        kind = OPTIONS[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"option {name!r} must be {kind.__name__}, not {type(value).__name__}"
    if "traceparent" in options:  # the enqueue's trace context: exactly a W3C traceparent, nothing else
        problem = traceparent_problem(options["traceparent"])
        if problem:
            return f"option 'traceparent' {problem}"
    retries = options.get("retries", 0)
    if not 0 <= retries <= MAX_RETRIES_OPTION:
        return f"option 'retries' is {retries}, not between 0 and {MAX_RETRIES_OPTION}"
    priority = options.get("broker_priority", 0)
    if not 0 <= priority <= MAX_BROKER_PRIORITY:
        return f"option 'broker_priority' is {priority}, not between 0 and {MAX_BROKER_PRIORITY}"
    if _sizeof(options) > ENVELOPE_BYTES:
        return f"options are over {ENVELOPE_BYTES:,} bytes"
    problem = _unstorable(fields["kwargs"], "kwargs")
    if problem:
        return problem
    size = _sizeof(fields["kwargs"])
    if size > max_payload_bytes:
        return (
            f"arguments are {size:,} bytes of JSON, over the {max_payload_bytes:,}-byte limit "
            "(FUSION_JOBS_MAX_PAYLOAD_BYTES)"
        )
    return ""


def _problem(data: bytes, max_payload_bytes: int) -> tuple[str, dict[str, Any] | None]:
    limit = max_payload_bytes * ESCAPE_FACTOR + ENVELOPE_BYTES
    if len(data) > limit:
        # Too big to be one of ours whatever it holds: don't parse it, only find its id and task
        # where fusion-jobs writes them (names first, the id last).
        fields: dict[str, Any] = {k.decode(): v.decode() for k, v in _NAME_FIELD.findall(data[:1024])}
        found = _ID_FIELD.search(data[-4096:])
        if found:
            fields["message_id"] = found.group(1).decode()
        return (
            f"message is {len(data):,} bytes, over what FUSION_JOBS_MAX_PAYLOAD_BYTES="
            f"{max_payload_bytes:,} allows ({limit:,} bytes on the wire)",
            fields or None,
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8 text", None
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc.msg} at position {exc.pos})", None
    except (ValueError, RecursionError) as exc:  # an integer too long, nesting too deep
        return f"not JSON this worker accepts ({type(exc).__name__}: {str(exc)[:200]})", None
    if not isinstance(fields, dict):
        return f"JSON {type(fields).__name__}, not an object", None
    return check_fields(fields, max_payload_bytes=max_payload_bytes)[:1000], fields


def _clean(value: Any, limit: int) -> str:
    """Text from a message that PostgreSQL can store (NUL and lone surrogates escaped)."""
    text = value if isinstance(value, str) else ""
    return _UNSTORABLE.sub(lambda m: repr(m.group())[1:-1], text[:limit])


def record_malformed(reason: str, data: bytes, fields: dict[str, Any] | None) -> None:
    """Leave a failed run for a rejected message (best effort: never raises).

    The run is the message's own when its id is a UUID and that run has not started (no row yet,
    or ``queued``/``retrying``: a run whose message is bad would otherwise wait forever). A run that
    is running or finished is left as it was, and the rejected copy gets a run of its own under a
    fresh id, as does a message whose id is not a UUID; the error names the original id.
    """
    try:
        close_old_connections()
        raw_id = (fields or {}).get("message_id")
        run_id = raw_id if isinstance(raw_id, str) and _UUID.match(raw_id) else None
        error = f"MalformedMessage: {reason}; dead-lettered"
        if raw_id is not None and run_id is None:
            error += f" (message_id {_clean(str(raw_id), 100)!r})"
        error = _clean(error, 4000)
        now = timezone.now()
        row = {
            "task_name": _clean((fields or {}).get("actor_name"), 200) or "(malformed message)",
            "queue": _clean((fields or {}).get("queue_name"), 100),
            "status": RunStatus.FAILED,
            "kwargs": {"body_preview": data[:500].decode("utf-8", "replace").replace("\x00", "\\x00")},
            "finished_at": now,
            "published_at": now,
            "enqueued_by": "broker (malformed message)",
        }
        alias = db_alias()
        with transaction.atomic(using=alias):
            existing = None
            if run_id is not None:
                existing = (
                    JobRun.objects.using(alias).select_for_update().filter(pk=run_id).only("status").first()
                )
            if run_id is not None and existing is None:
                JobRun.objects.using(alias).create(id=run_id, error=error[:4000], **row)
            elif existing is not None and existing.status in (RunStatus.QUEUED, RunStatus.RETRYING):
                JobRun.objects.using(alias).filter(pk=existing.pk).update(
                    status=RunStatus.FAILED, error=error[:4000], finished_at=now, next_attempt_at=None
                )
            else:
                if existing is not None:
                    error += f" (a copy of run {run_id}, which is {existing.status} and was left as it was)"
                JobRun.objects.using(alias).create(id=uuid.uuid4(), error=error[:4000], **row)
    except Exception:
        logger.exception("could not record a malformed message")


class StrictJSONEncoder(JSONEncoder):
    def decode(self, data: bytes) -> Any:
        reason, fields = _problem(data, int(jobs_settings.MAX_PAYLOAD_BYTES))
        if reason:
            logger.error("rejecting a message to the dead-letter queue: %s", reason)
            record_malformed(reason, data, fields)
            raise DecodeError(f"malformed message: {reason}", data, MessageRejected(reason))
        return fields
