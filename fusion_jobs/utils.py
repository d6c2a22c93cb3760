"""Small helpers shared by the enqueue path, the worker and the admin."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .exceptions import PayloadError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: float | int | str | timedelta) -> float:
    """Seconds from ``600``, ``"600s"``, ``"10m"``, ``"1.5h"`` or a timedelta; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"not a duration: {value!r} (use seconds, or a string like '600s', '10m', '2h')")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(f"not a duration: {value!r}")
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {value!r}")
    return seconds


def mask_url(url: str | None) -> str | None:
    """The URL with its password replaced by ``***``; never fails, never returns the password."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{user}:***@{host}"
        if parts.port is not None:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        return "<unparseable broker URL>"


def scrub(text: str, url: str | None) -> str:
    """Remove the broker password from arbitrary text (exception messages, log lines)."""
    if not url or not text:
        return text
    try:
        password = urlsplit(url).password
    except ValueError:
        return text
    if password:
        text = text.replace(password, "***")
    return text


def _find_unserialisable(value: Any, path: str) -> tuple[str, Any] | None:
    if value is None or isinstance(value, bool | int | str):
        return None
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return path, value
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _find_unserialisable(item, f"{path}[{index}]")
            if found:
                return found
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} key {key!r}", key
            found = _find_unserialisable(item, f"{path}[{key!r}]")
            if found:
                return found
        return None
    return path, value


def json_roundtrip(kwargs: dict[str, Any], *, task_name: str, max_bytes: int) -> tuple[dict[str, Any], int]:
    """Validate, encode and decode the arguments exactly as a worker would see them.

    Returns the decoded arguments and the encoded size. Raises PayloadError naming the first
    offending argument path (``kwargs['when']``), or the size when over ``max_bytes``.
    Dict keys must be strings (JSON would silently turn ``1`` into ``"1"``); tuples become lists
    on both paths, as they would on the wire.
    """
    found = _find_unserialisable(kwargs, "kwargs")
    if found:
        path, value = found
        raise PayloadError(
            f"{task_name}: {path} is not JSON-serialisable ({type(value).__name__}: {value!r:.80}); "
            "pass ids, strings, numbers, lists and dicts with string keys"
        )
    encoded = json.dumps(kwargs, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    size = len(encoded.encode("utf-8"))
    if size > max_bytes:
        raise PayloadError(
            f"{task_name}: arguments are {size:,} bytes of JSON, over the {max_bytes:,}-byte limit "
            "(FUSION_JOBS_MAX_PAYLOAD_BYTES); store large data elsewhere and pass its id"
        )
    return json.loads(encoded), size


def to_json_result(value: Any, max_bytes: int) -> Any:
    """A task's return value as stored on the run: JSON as is, else its repr; truncated when large."""
    try:
        encoded = json.dumps(value, ensure_ascii=False, allow_nan=False, default=None)
    except (TypeError, ValueError):
        encoded = json.dumps({"repr": repr(value)[:max_bytes]})
        value = json.loads(encoded)
    if len(encoded.encode("utf-8")) > max_bytes:
        return {"truncated": True, "size": len(encoded), "preview": encoded[: max(0, max_bytes - 200)]}
    return value


def positive_int(text: str) -> int:
    """argparse type for counts (processes, threads, prefetch): an error that names the value."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value
