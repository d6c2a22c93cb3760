"""example/env.py: the one way the example's settings read the environment."""

from __future__ import annotations

import pytest

from example import env


def test_unset_and_empty_mean_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("T_ENV", raising=False)
    assert (env.text("T_ENV", "d"), env.flag("T_ENV", True), env.integer("T_ENV", 7)) == ("d", True, 7)
    monkeypatch.setenv("T_ENV", "")
    assert (env.text("T_ENV", "d"), env.flag("T_ENV", True), env.number("T_ENV", 1.5)) == ("d", True, 1.5)
    assert env.names("T_ENV", "a, b") == ["a", "b"]


@pytest.mark.parametrize(
    ("raw", "on"), [("1", True), ("TRUE", True), (" on ", True), ("0", False), ("no", False)]
)
def test_flags(monkeypatch: pytest.MonkeyPatch, raw: str, on: bool) -> None:
    monkeypatch.setenv("T_ENV", raw)
    assert env.flag("T_ENV", not on) is on


def test_values_are_typed_and_a_bad_number_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_ENV", " 42 ")
    assert env.integer("T_ENV", 0) == 42
    assert env.number("T_ENV", 0.0) == 42.0
    monkeypatch.setenv("T_ENV", "x, ,y")
    assert env.names("T_ENV") == ["x", "y"]
    monkeypatch.setenv("T_ENV", "soon")
    with pytest.raises(ValueError, match="T_ENV='soon' is not a whole number"):
        env.integer("T_ENV", 0)
