"""fusion_jobs: background jobs for Django, on Dramatiq + RabbitMQ, with an inline fallback.

Importing this package has no side effects and loads neither dramatiq nor pika: the broker is
built only when jobs are enabled and a run is published or a worker starts.
"""

from .api import RunHandle, enqueue, enqueue_at, enqueue_many, get_jobs_status, is_jobs_enabled
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

__version__ = "0.1.0"

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
