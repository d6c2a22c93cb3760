"""Built-in maintenance tasks, found by task autodiscovery; scheduled as crons by the scheduler.

Kept light: importing this module loads neither dramatiq nor pika, and the work is imported
only when a task runs.
"""

from __future__ import annotations

import logging
from typing import Any

from .registry import task

logger = logging.getLogger("fusion_jobs.maintenance")


@task(name="fusion-jobs-prune-runs", execution_timeout="10m", max_retries=1)
def prune_runs(days: int | None = None, batch_size: int = 1000) -> dict[str, Any]:
    """Delete finished runs older than FUSION_JOBS_RUN_RETENTION_DAYS (or ``days``), in batches.

    Every batch commits on its own, so a backlog too big for one run is worked off by the next ones.
    """
    from .retention import prune_runs as prune

    result = prune(days=days, batch_size=batch_size, progress=logger.info)
    return result.as_dict()


@task(name="fusion-jobs-sweep-stuck", execution_timeout="5m", max_retries=0)
def sweep_stuck() -> dict[str, int]:
    """Fail ``running`` runs with no sign of life long past their timeout (their worker is gone)."""
    from .recording import sweep_stuck as sweep

    marked = sweep()
    if marked:
        logger.warning("marked %d stuck run(s) as failed (worker lost)", marked)
    return {"marked": marked}
