"""Small helpers shared by the enqueue path, the worker and the admin."""

from __future__ import annotations

import argparse
import json
import os
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


#: JSON nesting ``enqueue()`` accepts, counting the arguments' own dict as level 1. Deeper data
#: would hit Python's recursion limit in the JSON codec; no real argument list needs more.
MAX_NESTING = 100
#: Integers must fit in a signed 64 bits: what a PostgreSQL ``bigint``, most JSON parsers outside
#: Python and most languages' native integers hold exactly. Pass bigger numbers as strings.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_PATH_SHOWN = 160


def safe_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, never raising (a broken ``__repr__``, a huge int)."""
    try:
        text = repr(value)
    except Exception:  # any repr() failure, RecursionError included
        text = f"<{type(value).__name__} whose repr() failed>"
    return text[:limit]


def clean_text(text: str) -> str:
    """``text`` with NUL and lone surrogates replaced by U+FFFD: what PostgreSQL can store."""
    if text.isascii():
        return text.replace("\x00", "\ufffd") if "\x00" in text else text
    return _UNSTORABLE.sub("\ufffd", text)


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which PostgreSQL cannot store; remove it or pass the data base64-encoded"
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"contains a lone surrogate ({text[exc.start]!r} at index {exc.start}), which is not valid "
            "Unicode; decode such text with errors='replace'"
        )
    return None


def _shown(path: str) -> str:
    return path if len(path) <= _PATH_SHOWN else f"{path[: _PATH_SHOWN - 40]}…{path[-40:]}"


def _payload_problem(value: Any, path: str, depth: int, active: dict[int, str]) -> tuple[str, str] | None:
    """The first thing in ``value`` that cannot make the trip to a worker: (path, what is wrong)."""
    if value is None or value is True or value is False:
        return None
    if isinstance(value, str):
        problem = _text_problem(value)
        return (path, problem) if problem else None
    if isinstance(value, int):
        if INT_MIN <= value <= INT_MAX:
            return None
        return path, "is an integer outside the signed 64-bit range; pass it as a string"
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return path, f"is not JSON-serialisable (float: {value!r})"
        return None
    if not isinstance(value, list | tuple | dict):
        return path, f"is not JSON-serialisable ({type(value).__name__}: {safe_repr(value)})"
    if depth >= MAX_NESTING:
        return path, f"is nested deeper than {MAX_NESTING} levels"
    marker = id(value)
    if marker in active:
        return path, f"refers back to {_shown(active[marker])} (a circular reference)"
    active[marker] = path
    try:
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    return f"{path} key {safe_repr(key)}", "is not a string (JSON keys are strings)"
                problem = _text_problem(key)
                if problem:
                    return f"{path} key {safe_repr(key)}", problem
                found = _payload_problem(item, f"{path}[{key!r}]", depth + 1, active)
                if found:
                    return found
        else:
            for index, item in enumerate(value):
                found = _payload_problem(item, f"{path}[{index}]", depth + 1, active)
                if found:
                    return found
        return None
    finally:
        del active[marker]


def json_roundtrip(kwargs: dict[str, Any], *, task_name: str, max_bytes: int) -> tuple[dict[str, Any], int]:
    """Validate, encode and decode the arguments exactly as a worker would see them.

    Returns the decoded arguments and the encoded size. Raises PayloadError naming the first
    offending argument path (``kwargs['a'][0]['b']``): a value JSON cannot carry, a NUL or a lone
    surrogate in a string or key (PostgreSQL cannot store them), an integer beyond 64 bits,
    nesting deeper than ``MAX_NESTING`` or a circular reference; or the size when over
    ``max_bytes``. Dict keys must be strings (JSON would silently turn ``1`` into ``"1"``);
    tuples become lists on both paths, as they would on the wire.
    """
    found = _payload_problem(kwargs, "kwargs", 0, {})
    if found:
        path, problem = found
        raise PayloadError(f"{task_name}: {_shown(path)} {problem}")
    encoded = json.dumps(kwargs, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    size = len(encoded.encode("utf-8"))
    if size > max_bytes:
        raise PayloadError(
            f"{task_name}: arguments are {size:,} bytes of JSON, over the {max_bytes:,}-byte limit "
            "(FUSION_JOBS_MAX_PAYLOAD_BYTES); store large data elsewhere and pass its id"
        )
    return json.loads(encoded), size


def _clean_json(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k) if isinstance(k, str) else k: _clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_json(item) for item in value]
    return value


def to_json_result(value: Any, max_bytes: int) -> Any:
    """A task's return value as stored on the run: JSON as is, else its repr; truncated when large.

    Never raises, whatever the task returned: NUL and lone surrogates (which PostgreSQL refuses)
    become U+FFFD, and a value JSON cannot encode (a set, a cycle, nesting past the recursion
    limit, a huge int) is stored as its repr.
    """
    try:
        encoded = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        value = {"repr": clean_text(safe_repr(value, max_bytes))}
        encoded = json.dumps(value, ensure_ascii=False)
    if "\\u0000" in encoded or (not encoded.isascii() and _UNSTORABLE.search(encoded)):
        try:
            value = _clean_json(value)
        except RecursionError:
            value = {"repr": clean_text(safe_repr(value, max_bytes))}
        encoded = json.dumps(value, ensure_ascii=False, allow_nan=False)
    if len(encoded.encode("utf-8")) > max_bytes:
        return {"truncated": True, "size": len(encoded), "preview": encoded[: max(0, max_bytes - 200)]}
    return value


def positive_int(text: str) -> int:
    """argparse type for counts (processes, threads, prefetch): an error that names the value."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one owned by another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
