"""Settings for ``runcrons`` subprocesses in the scheduler tests: only the test's cron is declared."""

from __future__ import annotations

from tests.settings import *  # noqa: F403

FUSION_JOBS_CRON_REGISTRARS = ["tests.scheduler.cron_registrars.register_every_minute"]
FUSION_JOBS_CRON_AUTODISCOVER = False  # the example's agent crons stay out of these tests
FUSION_JOBS_CRON_POLL_INTERVAL = 1.0
