"""Backends: how a run is executed, and the handler that picks one from the settings.

``get_backend()`` reads ``FUSION_JOBS_BROKER_URL`` and ``FUSION_JOBS_EAGER`` (like Django's
``TASKS`` handler reads its setting): the broker backend (Dramatiq workers through RabbitMQ)
when a URL is set and eager is off, else the inline one. Backend classes are imported by dotted
path when first chosen, so importing this package loads neither pika nor the models.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from ..conf import PREFIX, jobs_settings

if TYPE_CHECKING:
    from .base import BaseBackend

BROKER_BACKEND = "fusion_jobs.backends.broker.BrokerBackend"
INLINE_BACKEND = "fusion_jobs.backends.inline.InlineBackend"

B = TypeVar("B", bound="BaseBackend")

_lock = threading.Lock()
_chosen: tuple[tuple[str, bool], BaseBackend] | None = None
_installed: BaseBackend | None = None


def get_backend() -> BaseBackend:
    """The backend new runs go through: installed by ``use_backend()``, else chosen by the settings.

    The choice is kept until ``setting_changed`` fires or the two settings read differently
    (they may come from the environment, which sends no signal).
    """
    global _chosen
    if _installed is not None:
        return _installed
    url = str(jobs_settings.BROKER_URL or "")
    key = (url, bool(jobs_settings.EAGER))
    chosen = _chosen
    if chosen is not None and chosen[0] == key:
        return chosen[1]
    with _lock:
        backend: BaseBackend = import_string(BROKER_BACKEND if url and not key[1] else INLINE_BACKEND)()
        _chosen = (key, backend)
    return backend


def broker_backend() -> BaseBackend:
    """The broker backend, whatever the jobs gate says: a cron tick, an admin retry and the relay
    publish to the configured broker even where new runs execute inline."""
    return import_string(BROKER_BACKEND)()  # by path: pika is loaded only when a message is sent


@contextmanager
def use_backend(backend: B) -> Iterator[B]:
    """Send every run through ``backend`` inside the block (tests: ``backends.stub.StubBackend``)."""
    global _installed
    previous, _installed = _installed, backend
    try:
        yield backend
    finally:
        _installed = previous


def _forget(*, setting: str, **kwargs: Any) -> None:
    global _chosen
    if setting.startswith(PREFIX):
        _chosen = None


setting_changed.connect(_forget, dispatch_uid="fusion_jobs.backends")

__all__ = ["BROKER_BACKEND", "INLINE_BACKEND", "broker_backend", "get_backend", "use_backend"]
