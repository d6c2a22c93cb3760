"""System checks with stable ids (``fusion_jobs.E001``...), run by ``manage.py check`` and at start-up."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core import checks

from .conf import PREFIX, SETTINGS, dramatiq_broker_url, jobs_settings
from .registry import all_tasks
from .utils import mask_url

_KIND_IDS = {
    bool: "fusion_jobs.E004",
    int: "fusion_jobs.E005",
    float: "fusion_jobs.E005",
    str: "fusion_jobs.E006",
}


def _setting_error(name: str) -> checks.CheckMessage | None:
    """The error for one setting whose value falls outside what ``conf.SETTINGS`` declares."""
    spec = SETTINGS[name]
    value = getattr(jobs_settings, name)
    problem = spec.problem(value)
    if problem is None:
        return None
    shown = mask_url(value) if spec.secret and isinstance(value, str) else repr(value)
    where = {"environment": " (from the environment)", "settings": " (in settings)"}.get(
        jobs_settings.source(name), ""
    )
    default = "empty" if spec.default in ("", ()) else repr(spec.default)
    return checks.Error(
        f"{PREFIX}{name}{where} is {shown}: {problem}.",
        hint=f"Use {spec.expectation()}; or remove it for the default ({default}).",
        id=spec.check_id or _KIND_IDS.get(spec.kind, "fusion_jobs.E007"),
    )


@checks.register("fusion_jobs")
def check_broker_url(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    error = _setting_error("BROKER_URL")
    return [error] if error else []


@checks.register("fusion_jobs")
def check_dramatiq_broker(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """A django-dramatiq project: say which broker URL fusion-jobs uses; refuse a non-RabbitMQ one."""
    if not hasattr(settings, "DRAMATIQ_BROKER") or jobs_settings.source("BROKER_URL") in (
        "settings",
        "environment",
    ):
        return []
    url, problem = dramatiq_broker_url()
    if problem:
        return [
            checks.Error(
                f"FUSION_JOBS_BROKER_URL is not set and {problem}.",
                hint="Point DRAMATIQ_BROKER at RabbitMQ (dramatiq.brokers.rabbitmq.RabbitmqBroker with "
                "OPTIONS={'url': 'amqp://...'}), or set FUSION_JOBS_BROKER_URL to a RabbitMQ URL.",
                id="fusion_jobs.E020",
            )
        ]
    return [
        checks.Info(
            f"fusion-jobs uses the RabbitMQ URL of DRAMATIQ_BROKER ({mask_url(url)}): "
            "FUSION_JOBS_BROKER_URL is not set.",
            hint="Set FUSION_JOBS_BROKER_URL to use another broker (or '' to run jobs inline).",
            id="fusion_jobs.I020",
        )
    ]


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
    """Every setting but the broker URL (``check_broker_url``) against its declared type and range."""
    errors = [_setting_error(name) for name in SETTINGS if name != "BROKER_URL"]
    found: list[checks.CheckMessage] = [e for e in errors if e is not None]
    if (
        jobs_settings.valid("RETRY_MIN_BACKOFF")
        and jobs_settings.valid("RETRY_MAX_BACKOFF")
        and jobs_settings.RETRY_MIN_BACKOFF > jobs_settings.RETRY_MAX_BACKOFF
    ):
        found.append(
            checks.Warning(
                f"FUSION_JOBS_RETRY_MIN_BACKOFF ({jobs_settings.RETRY_MIN_BACKOFF:g} s) is above "
                f"FUSION_JOBS_RETRY_MAX_BACKOFF ({jobs_settings.RETRY_MAX_BACKOFF:g} s): every retry waits the maximum.",
                hint="Set the minimum at or below the maximum.",
                id="fusion_jobs.W004",
            )
        )
    return found


@checks.register("fusion_jobs")
def check_quorum_priority(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """RabbitMQ 3.10-3.11 refuses x-max-priority on a quorum queue: every worker would fail to start."""
    if not (jobs_settings.valid("QUEUE_TYPE") and jobs_settings.valid("MAX_PRIORITY")):
        return []
    if jobs_settings.QUEUE_TYPE != "quorum" or not jobs_settings.MAX_PRIORITY:
        return []
    return [
        checks.Error(
            f"FUSION_JOBS_QUEUE_TYPE is 'quorum' and FUSION_JOBS_MAX_PRIORITY is {jobs_settings.MAX_PRIORITY}: "
            "quorum queues take no x-max-priority (RabbitMQ refuses the declaration).",
            hint="Set FUSION_JOBS_MAX_PRIORITY to 0 (priorities are then ignored: route urgent tasks to their "
            "own queue and worker instead), or keep classic queues.",
            id="fusion_jobs.E030",
        )
    ]


@checks.register("fusion_jobs")
def check_shared_vhost(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Two projects on one vhost with unprefixed queues consume each other's messages."""
    url = jobs_settings.BROKER_URL
    if (
        not url
        or not jobs_settings.valid("BROKER_URL")
        or not jobs_settings.valid("QUEUE_NAMESPACE")
        or jobs_settings.QUEUE_NAMESPACE
    ):
        return []
    vhost = unquote(urlsplit(url).path[1:]) if len(urlsplit(url).path) > 1 else "/"
    if vhost != "/":
        return []
    return [
        checks.Warning(
            "FUSION_JOBS_QUEUE_NAMESPACE is empty and the broker URL uses the default vhost '/': another "
            "project on this RabbitMQ would share this project's queues and run (or lose) its messages.",
            hint="Set FUSION_JOBS_QUEUE_NAMESPACE to a short project name, or give the project its own vhost "
            "(amqp://user:password@host:5672/<vhost>).",
            id="fusion_jobs.W003",
        )
    ]


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
    if not (jobs_settings.valid("CONSUMER_TIMEOUT") and jobs_settings.valid("DEFAULT_EXECUTION_TIMEOUT")):
        return []  # check_settings_values reports it
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
