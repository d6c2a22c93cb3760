"""The run a thread is executing, so a task can report progress without being passed a handle."""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .conf import jobs_settings

if TYPE_CHECKING:
    from .recording import Attempt

logger = logging.getLogger("fusion_jobs.progress")


@dataclass
class RunContext:
    attempt: Attempt
    result: Any = None
    last_write: float = 0.0
    last_stage: str = ""
    pending: tuple[str, int | None, int | None] | None = field(default=None)


_current: ContextVar[RunContext | None] = ContextVar("fusion_jobs_run", default=None)


def current() -> RunContext | None:
    return _current.get()


def activate(ctx: RunContext | None) -> object:
    return _current.set(ctx)


def deactivate(token: Any) -> None:
    _current.reset(token)


def current_run_id() -> str | None:
    """The id of the run this code is executing in, or None outside a task."""
    ctx = _current.get()
    return ctx.attempt.run_id if ctx else None


def report_progress(stage: str, done: int | None = None, total: int | None = None) -> None:
    """Record the current stage (and ``done`` of ``total``) on the run executing this code.

    Cheap to call in a tight loop: a write happens when the stage changes, on completion
    (``done == total``), or at most once per ``FUSION_JOBS_PROGRESS_INTERVAL`` seconds. Outside a
    task it does nothing, so the same function works when called directly.
    """
    # lazy: ``import fusion_jobs`` loads this module, and recording loads the models.
    from .recording import write_progress

    ctx = _current.get()
    if ctx is None:
        return
    now = time.monotonic()
    due = (
        stage != ctx.last_stage
        or (done is not None and total is not None and done >= total)
        or now - ctx.last_write >= float(jobs_settings.PROGRESS_INTERVAL)
    )
    if not due:
        return
    ctx.last_write = now
    ctx.last_stage = stage
    try:
        write_progress(ctx.attempt, stage, done, total)
    except Exception:  # progress is advisory: never fail the task over it
        logger.warning("could not record progress for run %s", ctx.attempt.run_id, exc_info=True)
