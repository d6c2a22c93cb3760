"""fusion_jobs: background jobs for Django, on Dramatiq + RabbitMQ, with an inline fallback.

Importing this package has no side effects and loads neither dramatiq nor pika: the broker is
built only when jobs are enabled and a run is published or a worker starts.

The entry points of :mod:`fusion_jobs.api` are attributes resolved on first access (PEP 562):
that module works with the models, which Django can load only once its apps are ready, while a
project's settings or ``models.py`` may import this package (``@task``) before that.
"""

from typing import TYPE_CHECKING, Any

from .context import current_run_id, report_progress
from .exceptions import (
    CronError,
    FusionJobsError,
    PayloadError,
    PublishError,
    TaskArgumentsError,
    UnknownTaskError,
)
from .registry import Task, task
from .scheduler.crontab import next_fire_times
from .scheduler.declare import delete_cron, ensure_cron

if TYPE_CHECKING:
    from .api import RunHandle, enqueue, enqueue_at, enqueue_many, get_jobs_status, is_jobs_enabled

__version__ = "0.1.0"

_FROM_API = {"RunHandle", "enqueue", "enqueue_at", "enqueue_many", "get_jobs_status", "is_jobs_enabled"}


def __getattr__(name: str) -> Any:
    if name in _FROM_API:
        from . import api  # lazy: on first use, once the app registry is ready (see the docstring)

        return getattr(api, name)
    raise AttributeError(f"module 'fusion_jobs' has no attribute {name!r}")


__all__ = [
    "CronError",
    "FusionJobsError",
    "PayloadError",
    "PublishError",
    "RunHandle",
    "Task",
    "TaskArgumentsError",
    "UnknownTaskError",
    "current_run_id",
    "delete_cron",
    "enqueue",
    "enqueue_at",
    "enqueue_many",
    "ensure_cron",
    "get_jobs_status",
    "is_jobs_enabled",
    "next_fire_times",
    "report_progress",
    "task",
]
