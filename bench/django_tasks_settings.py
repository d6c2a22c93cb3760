"""Settings for ``bench/tasks_framework.py``: bench.settings plus both Tasks backends and their apps."""

from __future__ import annotations

from bench.settings import *  # noqa: F403
from bench.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench.dtapp"]  # django_tasks_db is in bench.settings
TASKS = {
    "default": {
        "BACKEND": "fusion_jobs.backends.django_tasks.FusionJobsBackend",
        "QUEUES": ["default", "bench_dt"],
    },
    "db": {"BACKEND": "django_tasks_db.backend.DatabaseBackend"},
}
