"""Built-in maintenance tasks, and the crons ``runcrons`` declares for them by default.

``runcrons`` calls :func:`register_maintenance_crons` at every start, before the project's
registrars: ``fusion-jobs-prune-runs`` daily (``FUSION_JOBS_CRON_PRUNE_RUNS``) and
``fusion-jobs-sweep-stuck`` every five minutes (``FUSION_JOBS_CRON_SWEEP_STUCK``) and
``fusion-jobs-rollup`` every five minutes (``FUSION_JOBS_CRON_ROLLUP``, the dashboard's charts). An empty
setting turns one off: it is then no longer declared, so that start marks it orphaned.

Kept light: importing this module loads neither dramatiq nor pika.
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal

from .conf import jobs_settings
from .recording import sweep_stuck as sweep
from .registry import task
from .retention import prune_runs as prune
from .rollup import refresh_rollup as refresh
from .scheduler.declare import ensure_cron

logger = logging.getLogger("fusion_jobs.maintenance")

PRUNE_CRON = "fusion-jobs-prune-runs"
SWEEP_CRON = "fusion-jobs-sweep-stuck"
ROLLUP_CRON = "fusion-jobs-rollup"

#: Sent after every ``fusion-jobs-sweep-stuck`` run, with ``marked`` (runs failed by this sweep).
#: A project whose own rows mirror a run (a document ``processing`` while its run is) connects
#: here to mend those whose run is no longer running, killed web process or worker alike.
stuck_runs_swept = Signal()


@task(name="fusion-jobs-prune-runs", execution_timeout="10m", max_retries=1)
def prune_runs(days: int | None = None, batch_size: int = 1000) -> dict[str, Any]:
    """Delete finished runs older than FUSION_JOBS_RUN_RETENTION_DAYS (or ``days``), in batches.

    Every batch commits on its own, so a backlog too big for one run is worked off by the next ones.
    """
    result = prune(days=days, batch_size=batch_size, progress=logger.info)
    return result.as_dict()


@task(name="fusion-jobs-sweep-stuck", execution_timeout="5m", max_retries=0)
def sweep_stuck() -> dict[str, int]:
    """Fail ``running`` runs silent for longer than their execution timeout plus
    ``FUSION_JOBS_STUCK_GRACE_SECONDS``: a worker's killed process or a killed web process's inline
    run (same rule: nothing that still runs them would stay silent that long), then tell
    :data:`stuck_runs_swept`'s receivers."""
    marked = sweep()
    if marked:
        logger.warning("marked %d stuck run(s) as failed (worker or web process lost)", marked)
    for receiver, outcome in stuck_runs_swept.send_robust(sender=sweep_stuck, marked=marked):
        if isinstance(outcome, Exception):
            logger.error(
                "stuck_runs_swept receiver %r failed: %s: %s", receiver, type(outcome).__name__, outcome
            )
    return {"marked": marked}


@task(name="fusion-jobs-rollup", execution_timeout="10m", max_retries=0)
def refresh_rollup() -> dict[str, Any]:
    """Recompute the dashboard's per-minute, 15-minute and hourly summaries of recently ended runs.

    Exact and idempotent (whole buckets are recomputed from the runs), so a missed or repeated
    tick costs nothing but time; the dashboard reads runs after the last refresh directly.
    """
    return refresh().as_dict()


def register_maintenance_crons() -> None:
    """Declare the maintenance crons their settings leave on (``runcrons`` calls it at every start)."""
    for name, setting, misfire in (
        (PRUNE_CRON, "CRON_PRUNE_RUNS", "latest"),
        (SWEEP_CRON, "CRON_SWEEP_STUCK", "skip"),
        (ROLLUP_CRON, "CRON_ROLLUP", "skip"),
    ):
        expression = str(getattr(jobs_settings, setting) or "").strip()
        if expression:
            ensure_cron(name, name, expression, misfire=misfire)
