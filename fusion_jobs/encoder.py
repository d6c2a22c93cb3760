"""Dramatiq's JSON encoding, strict on the way in: a malformed message is recorded, then dead-lettered.

Anyone who can publish to the vhost can put bytes on a queue. Dramatiq already rejects what it
cannot decode to the dead-letter queue (``<queue>.XQ``); this encoder also checks the message's
shape and leaves a failed ``JobRun`` saying why, so an operator sees it in the admin instead of
only in a log line. JSON only: there is no pickle fallback.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from dramatiq.encoder import JSONEncoder
from dramatiq.errors import DecodeError

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


def _problem(data: bytes) -> tuple[str, dict[str, Any] | None]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8 text", None
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc.msg} at position {exc.pos})", None
    if not isinstance(fields, dict):
        return f"JSON {type(fields).__name__}, not an object", None
    missing = [key for key in REQUIRED if key not in fields]
    if missing:
        return f"missing field(s) {', '.join(missing)}", fields
    wrong = [key for key, kind in REQUIRED.items() if not isinstance(fields[key], kind)]
    if wrong:
        return f"field(s) of the wrong type: {', '.join(wrong)}", fields
    return "", fields


def record_malformed(reason: str, data: bytes, fields: dict[str, Any] | None) -> None:
    """Leave a failed run for a message that cannot be decoded (best effort: never raises)."""
    try:
        from django.db import close_old_connections
        from django.utils import timezone

        from .models import JobRun, RunStatus

        close_old_connections()
        run_id = None
        if fields and isinstance(fields.get("message_id"), str):
            try:
                run_id = uuid.UUID(fields["message_id"])
            except ValueError:
                run_id = None
        now = timezone.now()
        JobRun.objects.update_or_create(
            id=run_id or uuid.uuid4(),
            defaults={
                "task_name": str((fields or {}).get("actor_name") or "(malformed message)")[:200],
                "queue": str((fields or {}).get("queue_name") or "")[:100],
                "status": RunStatus.FAILED,
                "kwargs": {"body_preview": data[:500].decode("utf-8", "replace").replace("\x00", "\\x00")},
                "error": f"MalformedMessage: {reason}; dead-lettered",
                "finished_at": now,
                "published_at": now,
                "enqueued_by": "broker (malformed message)",
            },
        )
    except Exception:
        logger.exception("could not record a malformed message")


class StrictJSONEncoder(JSONEncoder):
    def decode(self, data: bytes) -> Any:
        reason, fields = _problem(data)
        if reason:
            logger.error("rejecting malformed message to the dead-letter queue: %s", reason)
            record_malformed(reason, data, fields)
            raise DecodeError(f"malformed message: {reason}", data, ValueError(reason))
        return fields
