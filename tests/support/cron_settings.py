"""Settings for ``runcrons`` subprocesses in the scheduler tests: only the test's crons are declared.

``T_CRON_REGISTRARS`` (comma-separated) replaces the default registrar for one test's subprocess.
"""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403

FUSION_JOBS_CRON_REGISTRARS = os.environ.get(
    "T_CRON_REGISTRARS", "tests.support.cron_registrars.register_every_minute"
).split(",")
FUSION_JOBS_CRON_POLL_INTERVAL = 1.0
