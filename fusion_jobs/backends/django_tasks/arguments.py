"""A Django task's arguments: bound by name to store them, and turned back into a call."""

from __future__ import annotations

import functools
import inspect
from typing import Any

from ...exceptions import PayloadError, TaskArgumentsError
from .framework import normalize_json


class TaskPayloadError(PayloadError, TypeError):
    """A Django task's arguments are not JSON (a PayloadError, and the TypeError Django raises)."""


@functools.lru_cache(maxsize=4096)
def call_signature(func: Any, takes_context: bool) -> inspect.Signature:
    """The function's signature as callers see it: without the ``context`` a context task takes."""
    signature = inspect.signature(func)
    if takes_context:
        signature = signature.replace(parameters=list(signature.parameters.values())[1:])
    return signature


def stored_signature(signature: inspect.Signature) -> inspect.Signature:
    """How the arguments are stored (by name, as every fusion-jobs run): all keyword-only.

    ``*args`` is stored as a list under its own name; positional-only parameters under theirs.
    This is the signature fusion-jobs checks a run's arguments against.
    """
    params = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in signature.parameters.values()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    params += [
        inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=())
        for p in signature.parameters.values()
        if p.kind is inspect.Parameter.VAR_POSITIONAL
    ]
    params += [p for p in signature.parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD]
    return signature.replace(parameters=params)


def call_arguments(signature: inspect.Signature, stored: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """The positional and keyword arguments to call the function with, from the stored ones."""
    positional: list[Any] = []
    keywords = dict(stored)
    in_order = True  # parameters are passed positionally while none before them was left out
    for param in signature.parameters.values():
        if param.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            if in_order and param.name in keywords:
                positional.append(keywords.pop(param.name))
            else:
                in_order = False
        elif param.kind is inspect.Parameter.VAR_POSITIONAL:
            extra = keywords.pop(param.name, [])
            if not isinstance(extra, list):
                raise TaskArgumentsError(
                    f"*{param.name} must be stored as a list, got {type(extra).__name__}"
                )
            positional.extend(extra)
    return positional, keywords


def bind_arguments(task: Any, args: Any, kwargs: Any) -> dict[str, Any]:
    """The arguments to store: bound to the signature by name (TaskArgumentsError), then Django's
    JSON normalisation (TaskPayloadError)."""
    signature = call_signature(task.func, task.takes_context)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise TaskArgumentsError(f"{task.module_path}: {exc}") from None
    payload: dict[str, Any] = {}
    named = set(signature.parameters)
    for param_name, value in bound.arguments.items():
        kind = signature.parameters[param_name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            clash = sorted(set(value) & named)
            if clash:
                raise TaskArgumentsError(
                    f"{task.module_path}: keyword argument(s) {', '.join(map(repr, clash))} in "
                    f"**{param_name} share a parameter's name, and arguments are stored by name"
                )
            payload.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            payload[param_name] = list(value)
        else:
            payload[param_name] = value
    try:
        normalized: dict[str, Any] = normalize_json(payload)
    except (TypeError, ValueError) as exc:
        raise TaskPayloadError(f"{task.module_path}: arguments are not JSON: {exc}") from None
    return normalized
