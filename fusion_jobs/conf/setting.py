"""One setting's declaration: default, type, documentation, and the range a system check enforces."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _number(value: float) -> str:
    return f"{int(value)}" if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Setting:
    """One setting: default, type, documentation, and the range a system check enforces.

    ``low``/``high`` bound numbers (``low_open``: strictly above ``low``); ``choices`` or
    ``pattern`` (a full match) constrain strings, and each item of a tuple setting; ``validate``
    returns a problem (never quoting a secret value) or None. ``check_id`` overrides the id
    the type implies (E004 booleans, E005 numbers, E006 strings, E007 lists); ``expect`` words
    the valid values for the hint when the declaration alone would not say it well.
    """

    default: Any
    kind: type
    doc: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    validate: Callable[[str], str | None] | None = None
    check_id: str | None = None
    secret: bool = False
    expect: str | None = None

    @property
    def constrained(self) -> bool:
        """Whether a range is declared beyond the type (every number, string and list must have one)."""
        if self.kind is bool:
            return True
        if self.kind in (int, float):
            return self.low is not None
        return bool(self.choices or self.pattern or self.validate)

    def expectation(self) -> str:
        """What a valid value looks like, for the check's hint."""
        if self.expect:
            return self.expect
        if self.kind is bool:
            return "True or False (1/0, true/false, yes/no, on/off in the environment)"
        if self.kind in (int, float):
            what = "a whole number" if self.kind is int else "a number"
            parts = []
            if self.low is not None:
                parts.append(f"{'above' if self.low_open else 'at least'} {_number(self.low)}")
            if self.high is not None:
                parts.append(f"at most {_number(self.high)}")
            return f"{what} {' and '.join(parts)}".strip()
        if self.choices:
            each = f"one of {', '.join(repr(c) for c in self.choices)}"
        elif self.pattern:
            each = f"matching {self.pattern}"
        else:
            each = "valid"
        if self.kind is tuple:
            return f"a list of strings (comma-separated in the environment), each {each}"
        return f"a string {each}"

    def problem(self, value: Any) -> str | None:
        """Why ``value`` (as read, after coercion) is invalid, or None when it is valid."""
        if self.kind is bool:
            return None if isinstance(value, bool) else "not a boolean"
        if self.kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return "not a number"
            if self.kind is int and not float(value).is_integer():
                return "not a whole number"
            if value != value or value in (float("inf"), float("-inf")):
                return "not a finite number"
            if self.low is not None and (value <= self.low if self.low_open else value < self.low):
                return "out of range"
            if self.high is not None and value > self.high:
                return "out of range"
            return None
        if self.kind is tuple:
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                return "not a list of strings"
            for item in value:
                problem = self._string_problem(item)
                if problem:
                    return problem
            return None
        if not isinstance(value, str):
            return "not a string"
        return self._string_problem(value)

    def _string_problem(self, value: str) -> str | None:
        if self.choices and value not in self.choices:
            return f"{value!r} is not one of {', '.join(self.choices)}"
        if self.pattern and not re.fullmatch(self.pattern, value):
            return f"{value!r} does not match {self.pattern}"
        return self.validate(value) if self.validate else None


def coerce(raw: Any, kind: type) -> Any:
    """A value read from the environment (a string) as ``kind``; left as is when it does not parse."""
    if kind is bool and isinstance(raw, str):
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        return raw  # left as is: the system check reports it
    if kind in (int, float) and isinstance(raw, str):
        try:
            return kind(raw)
        except ValueError:
            return raw
    if kind is tuple and isinstance(raw, str):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw
