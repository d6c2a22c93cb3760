"""No-op tasks for ``bench/tasks_framework.py``: the same empty body three ways (autodiscovered).

``fj_plain`` is a fusion-jobs task, ``fj_django`` a Django Tasks framework task on fusion-jobs'
backend (alias ``default``), ``db_django`` one on django-tasks-db's ``DatabaseBackend`` (``db``).
"""

from __future__ import annotations

from fusion_jobs import task as fusion_task
from fusion_jobs.backends.django_tasks import FRAMEWORK

if FRAMEWORK == "django.tasks":
    from django.tasks import task
else:
    from django_tasks import task

QUEUE = "bench_dt"


@fusion_task(name="bench.dt.plain", queue=QUEUE, max_retries=0)
def fj_plain(n: int = 0) -> None:
    """A fusion-jobs task."""


@task(queue_name=QUEUE, max_retries=0)
def fj_django(n: int = 0) -> None:
    """A Django task on FusionJobsBackend."""


@task(backend="db")
def db_django(n: int = 0) -> None:
    """A Django task on django-tasks-db's DatabaseBackend."""
