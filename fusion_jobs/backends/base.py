"""The backend interface: where a run's message goes, one class per way of running.

Like Django's ``django.tasks`` ``BaseTaskBackend``: the entry points read a backend's capability
flags instead of branching on settings, and :func:`fusion_jobs.backends.get_backend` picks the
backend once from ``FUSION_JOBS_BROKER_URL``/``FUSION_JOBS_EAGER``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..models import GATE_EAGER
from ..registry import Task


@dataclass(frozen=True)
class Outgoing:
    """One run's message, as the outbox hands it to a backend."""

    task: Task
    run_id: str
    kwargs: dict[str, Any]
    traceparent: str | None = None
    #: Retries already done: the worker's retry count starts from it (the relay republishing).
    retries: int = 0


class BaseBackend:
    """Publishes run messages; its flags tell ``enqueue()`` what it does with a new run."""

    #: New runs go to workers (``RunHandle.mode`` ``queued``); False: they run in the caller.
    queues_runs: ClassVar[bool] = False
    #: ``get_jobs_status()["mode"]``: ``broker`` or ``eager``.
    gate: ClassVar[str] = GATE_EAGER

    def publish(self, messages: Sequence[Outgoing]) -> None:
        """Put every message on the broker, confirmed; ``PublishError`` when it did not take them."""
        raise NotImplementedError
