"""``RunHandle``: what ``enqueue()`` returns (re-exported by ``fusion_jobs`` and ``fusion_jobs.api``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .models import FAILED_STATUSES, JobRun, RunStatus


@dataclass
class RunHandle:
    """What ``enqueue()`` returns: the run's id and whether it was queued or run inline.

    For an inline run that has finished, ``status``, ``result`` and ``error`` are filled in;
    ``refresh()`` reads the latest state from the database for either kind.
    """

    run_id: str
    mode: str  # HANDLE_QUEUED or HANDLE_INLINE
    task_name: str
    status: str = RunStatus.QUEUED.value
    result: Any = None
    error: str = ""

    @property
    def run(self) -> JobRun:
        return JobRun.objects.get(pk=self.run_id)

    def refresh(self) -> RunHandle:
        run = self.run
        self.status, self.result, self.error = run.status, run.result, run.error
        return self

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES
