"""The example's one way to read its environment: a variable, typed, or its default.

An unset or empty variable means the default, so ``NAME=`` in a compose file is the same as no
``NAME``. A value that does not parse (``DB_CONN_MAX_AGE=soon``) stops the start with the
variable's name, rather than running on a guess.
"""

from __future__ import annotations

import os

#: What turns a flag on (any case); anything else set turns it off.
TRUE = ("1", "true", "yes", "on")


def text(name: str, default: str = "") -> str:
    return os.environ.get(name) or default


def flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip()
    return value.lower() in TRUE if value else default


def integer(name: str, default: int) -> int:
    return int(_parsed(name, int, default))


def number(name: str, default: float) -> float:
    return float(_parsed(name, float, default))


def names(name: str, default: str = "") -> list[str]:
    """A comma-separated list, each item stripped, empty items dropped."""
    return [item.strip() for item in text(name, default).split(",") if item.strip()]


def _parsed(name: str, kind: type[int] | type[float], default: float) -> float:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return kind(value)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"environment variable {name}={value!r} is not {what}") from None
