"""The backend interface: what happens to a new run, one class per way of running.

Like Django's ``django.tasks`` ``BaseTaskBackend``: ``enqueue()`` hands a checked run to the
backend :func:`fusion_jobs.backends.get_backend` chose, whose capability flags say what it does,
instead of branching on settings. Every backend writes the run's row in the caller's transaction
and acts on it once that commits (:func:`after_commit`).
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from django.db import connections, transaction

from .. import tracing
from ..conf import broker_queue, jobs_settings
from ..context import current_run_id
from ..handle import RunHandle
from ..models import GATE_EAGER, HANDLE_INLINE, HANDLE_QUEUED, JobRun
from ..recording import db_alias, insert_runs
from ..registry import Task
from ..utils import json_roundtrip

logger = logging.getLogger("fusion_jobs")

#: Runs per INSERT of ``enqueue_many()``.
BATCH = 1000


@dataclass(frozen=True)
class Outgoing:
    """One run's message, as the outbox hands it to a backend."""

    task: Task
    run_id: str
    kwargs: dict[str, Any]
    traceparent: str | None = None
    #: Retries already done: the worker's retry count starts from it (the relay republishing).
    retries: int = 0


@dataclass
class NewRun:
    """A checked run on its way to a backend: what its row and message are made of."""

    task: Task
    kwargs: dict[str, Any]
    enqueued_by: str
    run_id: str = ""
    retry_of: JobRun | None = None
    #: The publish-error policy for this run; None: the task's, else the setting (``outbox``).
    policy: str | None = None
    #: ``enqueue_at()``: not to start before this time.
    not_before: datetime | None = None
    traceparent: str | None = None


class BaseBackend:
    """Writes new runs and runs or publishes them; its flags describe it to the entry points."""

    #: New runs go to workers (``RunHandle.mode`` ``queued``); False: they run in the caller.
    queues_runs: ClassVar[bool] = False
    #: ``get_jobs_status()["mode"]``: ``broker`` or ``eager``.
    gate: ClassVar[str] = GATE_EAGER

    def publish(self, messages: Sequence[Outgoing]) -> None:
        """Put every message on the broker, confirmed; ``PublishError`` when it did not take them."""
        raise NotImplementedError

    def hand_off(self, messages: Sequence[Outgoing], on_confirmed: Callable[[list[str]], None]) -> None:
        """Send messages of runs already on disk without waiting for the broker's confirms.

        ``on_confirmed`` gets the runs whose messages the broker confirmed, when it does; one
        never confirmed is left for the relay. ``PublishError``: nothing was sent. By default a
        confirmed :meth:`publish`.
        """
        self.publish(messages)
        on_confirmed([m.run_id for m in messages])

    def enqueue(self, run: NewRun) -> RunHandle:
        """Write the run's row in the caller's transaction; run or publish it once that commits."""
        raise NotImplementedError

    def enqueue_many(self, task: Task, payloads: list[dict[str, Any]], enqueued_by: str) -> list[RunHandle]:
        """Write the runs in one INSERT; run or publish them once the caller's transaction commits."""
        raise NotImplementedError

    def submit(self, task: Task, kwargs: dict[str, Any], **options: Any) -> RunHandle:
        """Check ``kwargs`` and enqueue the run, inside a producer span when tracing is on.

        ``options``: the other fields of :class:`NewRun`. Who enqueued defaults to the caller
        outside fusion_jobs, or the run this one is enqueued from.
        """
        payload = checked(task, kwargs)
        by = options.pop("enqueued_by", None) or caller()
        parent = current_run_id()
        if parent and not by.startswith(("admin", "cron")):
            by = f"run {parent}"
        run = NewRun(task, payload, by, run_id=str(uuid.uuid4()), **options)
        if not tracing.enabled():
            return self.enqueue(run)
        queue = broker_queue(task.effective_queue)
        with tracing.producer_span(task.name, queue, run.run_id, queued=self.queues_runs) as traceparent:
            run.traceparent = traceparent
            return self.enqueue(run)


def checked(
    task: Task, kwargs: dict[str, Any], *, label: str = "", limit: int | None = None
) -> dict[str, Any]:
    """``kwargs`` JSON round-tripped, or ``TaskArgumentsError``/``PayloadError`` naming ``label``.

    ``limit``: ``MAX_PAYLOAD_BYTES``, read once by a caller checking many (a setting costs a lookup).
    """
    task.check_arguments(kwargs, label=label)
    limit = int(jobs_settings.MAX_PAYLOAD_BYTES) if limit is None else limit
    payload: dict[str, Any] = json_roundtrip(kwargs, task_name=label or task.name, max_bytes=limit)[0]
    return payload


def caller() -> str:
    """``module:function`` of the first frame outside fusion_jobs (and Dramatiq, for an actor's
    ``send()``): who enqueued, for the admin."""
    frame = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not module.startswith(("fusion_jobs", "dramatiq.")):
            return f"{module}:{frame.f_code.co_name}"[:200]
        frame = frame.f_back  # type: ignore[assignment]
    return ""


def write_runs(
    task: Task, payloads: list[dict[str, Any]], enqueued_by: str, *, queued: bool
) -> tuple[str, list[RunHandle]]:
    """``enqueue_many()``'s rows, one INSERT per :data:`BATCH`; returns the database alias and handles.

    Committed with the caller's transaction, or outside one by a commit that waits for the disk:
    the broker backend then sends their messages without waiting for confirms.
    """
    template = JobRun.new_run(task, {}, queued=queued, enqueued_by=enqueued_by)
    run_ids = [str(uuid.uuid4()) for _ in payloads]
    alias = db_alias()
    for start in range(0, len(run_ids), BATCH):
        insert_runs(template, run_ids[start : start + BATCH], payloads[start : start + BATCH], using=alias)
    mode = HANDLE_QUEUED if queued else HANDLE_INLINE
    return alias, [RunHandle(run_id, mode, task.name) for run_id in run_ids]


def raise_if(error: Exception | None, may_raise: bool = True) -> None:
    if error is not None and may_raise:
        raise error


def after_commit(alias: str, hook: Callable[[bool], object]) -> None:
    """Run ``hook`` once the caller's transaction commits; at once when there is none.

    Outside a transaction the hook runs now, with ``may_raise=True``: a ``PublishError``
    (``ON_PUBLISH_ERROR=raise``) or the task's exception (``INLINE_RAISE``) reaches the caller.
    Inside one it runs after the commit, among the caller's other on-commit hooks, and Django
    skips all the later ones when a hook raises (other enqueues' publishes included). So there it
    gets ``may_raise=False``, leaves the failure on the run and its handle, and anything that
    still escapes is logged here, never raised.
    """
    if not connections[alias].in_atomic_block:
        hook(True)
        return

    def independent() -> None:
        try:
            hook(False)
        except Exception:
            logger.exception(
                "fusion_jobs on-commit hook failed after the transaction committed; logged, not raised, "
                "so the transaction's other on-commit hooks still run"
            )

    transaction.on_commit(independent, using=alias)
