"""Found by ``runcrons`` through FUSION_JOBS_CRON_AUTODISCOVER."""

from __future__ import annotations

import fusion_jobs

calls: list[str] = []


def register_crons() -> None:
    calls.append("discovered")
    fusion_jobs.ensure_cron("t-cron-record", "t-cron-discovered", "15 * * * *", {"label": "d"})
