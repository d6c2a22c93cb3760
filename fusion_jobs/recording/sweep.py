"""The stuck-run sweeper: fail ``running`` runs that nothing will ever finish."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from ..conf import jobs_settings
from ..models import JobRun, RunStatus
from . import transitions
from .places import db_alias


def sweep_stuck(now: datetime | None = None) -> int:
    """Mark ``running`` runs whose timeout plus grace has long passed with no heartbeat as failed.

    A run still ``running`` that long after its deadline has no live worker (the soft and hard
    time limits would have ended it), and its message was not redelivered (or it would have
    restarted), so nothing else will ever finish it. Each write is fenced by the attempt read.
    """
    now = now or timezone.now()
    grace = float(jobs_settings.STUCK_GRACE_SECONDS)
    default_timeout = float(jobs_settings.DEFAULT_EXECUTION_TIMEOUT)
    marked = 0
    alias = db_alias()
    # Oldest sign of life first, so a backlog of legitimately long runs can't hide the stuck ones.
    candidates = (
        JobRun.objects.using(alias)
        .filter(status=RunStatus.RUNNING, started_at__isnull=False)
        .annotate(last_sign=Coalesce("heartbeat_at", "started_at"))
        .filter(last_sign__lt=now - timedelta(seconds=grace))
        .order_by("last_sign")
        .only("id", "execution_timeout", "started_at", "heartbeat_at", "attempts", "worker", "attempt_log")
    )
    for row in candidates[:1000]:
        last_sign = row.heartbeat_at or row.started_at
        silent = (now - last_sign).total_seconds() if last_sign else 0.0
        if silent <= (row.execution_timeout or default_timeout) + grace:
            continue
        error = f"WorkerLost: no sign of life for {int(silent)} s, past the execution timeout plus grace"
        marked += (
            JobRun.objects.using(alias)
            .filter(pk=row.pk, status=RunStatus.RUNNING, attempts=row.attempts)
            .update(
                status=RunStatus.FAILED,
                finished_at=now,
                error=error,
                lost_attempts=F("lost_attempts") + 1,
                attempt_log=[*row.attempt_log, transitions.log_entry(row, "lost", now, error)],
            )
        )
    return marked
