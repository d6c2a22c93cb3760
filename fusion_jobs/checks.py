"""System checks with stable ids (``fusion_jobs.E001``...), run by ``manage.py check`` and at start-up."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core import checks

from .conf import jobs_settings
from .registry import all_tasks
from .utils import mask_url

PUBLISH_POLICIES = ("inline", "raise", "outbox")


@checks.register("fusion_jobs")
def check_broker_url(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    url = jobs_settings.BROKER_URL
    if not url:
        return []
    if not isinstance(url, str):
        return [
            checks.Error(
                "FUSION_JOBS_BROKER_URL must be a string.",
                hint="Set it to amqp://user:password@host:5672/vhost, or leave it empty to run jobs inline.",
                id="fusion_jobs.E001",
            )
        ]
    problem = ""
    try:
        parts = urlsplit(url)
        if parts.scheme not in ("amqp", "amqps"):
            problem = f"scheme {parts.scheme or '(none)'!r} is not amqp or amqps"
        elif not parts.hostname:
            problem = "it names no host"
        else:
            _ = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        problem = str(exc)
    if problem:
        return [
            checks.Error(
                f"FUSION_JOBS_BROKER_URL is malformed ({mask_url(url)}): {problem}.",
                hint="Use amqp://user:password@host:5672/vhost (RabbitMQ), or leave it empty to run jobs inline.",
                id="fusion_jobs.E001",
            )
        ]
    return []


@checks.register("fusion_jobs", checks.Tags.security)
def check_no_pickle(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    configured = [
        f"{name}={getattr(settings, name)!r}"
        for name in ("DRAMATIQ_ENCODER", "FUSION_JOBS_ENCODER")
        if "pickle" in str(getattr(settings, name, "")).lower()
    ]
    broker = getattr(settings, "DRAMATIQ_BROKER", None)
    if isinstance(broker, dict) and "pickle" in str(broker).lower():
        configured.append("DRAMATIQ_BROKER mentions pickle")
    if not configured:
        return []
    return [
        checks.Error(
            f"A pickle encoder is configured ({'; '.join(configured)}).",
            hint="fusion_jobs is JSON only: anyone who can publish to the broker could run code through "
            "pickle. Remove the setting; Dramatiq's JSONEncoder is used.",
            id="fusion_jobs.E002",
        )
    ]


@checks.register("fusion_jobs")
def check_settings_values(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    policy = jobs_settings.ON_PUBLISH_ERROR
    if policy not in PUBLISH_POLICIES:
        errors.append(
            checks.Error(
                f"FUSION_JOBS_ON_PUBLISH_ERROR is {policy!r}.",
                hint=f"Use one of {', '.join(PUBLISH_POLICIES)} ('outbox' is the production choice).",
                id="fusion_jobs.E003",
            )
        )
    for name in ("EAGER", "INLINE_RAISE", "PREPARED_STATEMENTS"):
        if not isinstance(getattr(jobs_settings, name), bool):
            errors.append(
                checks.Error(
                    f"FUSION_JOBS_{name} is {getattr(jobs_settings, name)!r}, not a boolean.",
                    hint="Use True/False (or 1/0, true/false in the environment).",
                    id="fusion_jobs.E004",
                )
            )
    for name in (
        "MAX_PAYLOAD_BYTES",
        "RESULT_MAX_BYTES",
        "DEFAULT_EXECUTION_TIMEOUT",
        "PUBLISH_TIMEOUT",
        "PROCESSES",
        "THREADS",
        "MAX_LOST_ATTEMPTS",
        "RUN_RETENTION_DAYS",
    ):
        value = getattr(jobs_settings, name)
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            errors.append(
                checks.Error(
                    f"FUSION_JOBS_{name} is {value!r}; it must be a positive number.",
                    hint="Remove it to use the default, or set a positive number.",
                    id="fusion_jobs.E005",
                )
            )
    return errors


@checks.register("fusion_jobs")
def check_eager_in_production(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    if jobs_settings.EAGER is True and not settings.DEBUG:
        return [
            checks.Warning(
                "FUSION_JOBS_EAGER is on with DEBUG=False: every job runs inside the request that enqueues it.",
                hint="Turn FUSION_JOBS_EAGER off in production and set FUSION_JOBS_BROKER_URL.",
                id="fusion_jobs.W001",
            )
        ]
    return []


@checks.register("fusion_jobs")
def check_task_timeouts(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    consumer_timeout = float(jobs_settings.CONSUMER_TIMEOUT)
    warnings: list[checks.CheckMessage] = []
    for task_obj in all_tasks().values():
        # A prefetched message waits up to one task length before it starts, and RabbitMQ's
        # clock runs from delivery: past half the consumer timeout the message can be requeued
        # while it is running (and run twice).
        if task_obj.effective_timeout * 2 >= consumer_timeout:
            warnings.append(
                checks.Warning(
                    f"Task {task_obj.name!r} may run {task_obj.effective_timeout:.0f} s, which with prefetching "
                    f"can exceed RabbitMQ's consumer_timeout of {consumer_timeout:.0f} s.",
                    hint="Lower the task's execution_timeout, or raise consumer_timeout with a RabbitMQ policy "
                    "and set FUSION_JOBS_CONSUMER_TIMEOUT to match.",
                    obj=task_obj.name,
                    id="fusion_jobs.W002",
                )
            )
    return warnings
