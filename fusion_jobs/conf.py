"""Every ``FUSION_JOBS_*`` setting, with its default, read on each access.

A setting is looked up in Django settings first, then in the environment variable of the same
name, then falls back to the default here. Reading on each access (as procrastinate's settings
object does) keeps ``override_settings`` and per-test environment changes working. Values are
validated by system checks (``fusion_jobs.checks``), not here, so a bad value never breaks an
import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from django.conf import settings as django_settings

PREFIX = "FUSION_JOBS_"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Setting:
    default: Any
    kind: type
    doc: str


#: The settings table; README's table is generated from the same text.
SETTINGS: dict[str, Setting] = {
    "BROKER_URL": Setting(
        "", str, "RabbitMQ URL (`amqp://user:pass@host:5672/vhost`). Empty: jobs disabled, runs inline."
    ),
    "EAGER": Setting(
        False, bool, "Run every job inline even when a broker is configured (tests, debugging)."
    ),
    "ON_PUBLISH_ERROR": Setting(
        "inline",
        str,
        "What `enqueue()` does when publishing fails: `inline` (run it here), `raise`, or `outbox`.",
    ),
    "INLINE_RAISE": Setting(False, bool, "Re-raise a task's exception from an inline `enqueue()` call."),
    "MAX_PAYLOAD_BYTES": Setting(256 * 1024, int, "Largest JSON payload `enqueue()` accepts, in bytes."),
    "RESULT_MAX_BYTES": Setting(64 * 1024, int, "Results larger than this (as JSON) are stored truncated."),
    "DEFAULT_QUEUE": Setting("default", str, "Queue for tasks that name none."),
    "DEFAULT_MAX_RETRIES": Setting(3, int, "Retries after a failure for tasks that set no `max_retries`."),
    "DEFAULT_EXECUTION_TIMEOUT": Setting(
        600.0, float, "Execution timeout in seconds for tasks that set none."
    ),
    "RETRY_MIN_BACKOFF": Setting(15.0, float, "First retry delay in seconds; doubles on each retry."),
    "RETRY_MAX_BACKOFF": Setting(
        600.0, float, "Cap on the retry delay in seconds (keep under consumer timeout)."
    ),
    "MAX_LOST_ATTEMPTS": Setting(
        3, int, "Attempts lost to a dead worker before the run is failed instead of redelivered."
    ),
    "STUCK_GRACE_SECONDS": Setting(
        120.0, float, "Grace after a run's timeout before the sweeper marks a silent `running` run lost."
    ),
    "HARD_LIMIT_GRACE": Setting(
        30.0,
        float,
        "Seconds past its timeout before a task stuck in a C call has its worker process restarted.",
    ),
    "PREPARED_STATEMENTS": Setting(
        True,
        bool,
        "PostgreSQL: prepare the run-recording statements once per connection. Turn off behind a "
        "transaction-pooling proxy that can't keep prepared statements (PgBouncer < 1.21); already "
        "off when `OPTIONS` set `server_side_binding` without `prepare_threshold`.",
    ),
    "PUBLISH_TIMEOUT": Setting(2.0, float, "Seconds a publish may take (connect + confirm) before it fails."),
    "CONSUMER_TIMEOUT": Setting(
        1800.0, float, "RabbitMQ's `consumer_timeout` in seconds, used to warn about long tasks."
    ),
    "PROCESSES": Setting(2, int, "Worker processes started by `rundramatiq`."),
    "THREADS": Setting(8, int, "Threads per worker process started by `rundramatiq`."),
    "PROGRESS_INTERVAL": Setting(1.0, float, "Minimum seconds between two progress writes of one run."),
    "RUN_RETENTION_DAYS": Setting(14, int, "Finished runs older than this are pruned."),
    "TASK_MODULES": Setting(("tasks",), tuple, "Module names autodiscovered in every installed app."),
    "CRON_REGISTRARS": Setting(
        (),
        tuple,
        "Dotted paths of functions `runcrons` calls at start-up to declare crons with `ensure_cron` "
        "(e.g. `example.agent.crons.register_agent_cron`).",
    ),
    "CRON_AUTODISCOVER": Setting(
        True,
        bool,
        "At `runcrons` start-up, also call `register_crons()` of every installed app's `crons` module.",
    ),
    "CRON_POLL_INTERVAL": Setting(
        5.0,
        float,
        "Seconds between two looks of `runcrons` at the schedules (admin pauses, other processes).",
    ),
    "CRON_LEASE_TTL": Setting(
        15.0,
        float,
        "Seconds the `runcrons` leader lease lasts unrenewed: a standby takes over this long after the leader dies.",
    ),
    "CRON_GRACE": Setting(
        60.0,
        float,
        "Seconds after its time a tick still fires as on time; a later one is missed and follows the misfire policy.",
    ),
    "CRON_CATCHUP_LIMIT": Setting(
        100, int, "Most missed ticks misfire policy `all` fires after an outage (the most recent ones)."
    ),
    "CRON_SKIPPED_RECORD_LIMIT": Setting(
        20,
        int,
        "Skipped ticks recorded as `skipped` runs per catch-up; the others are counted in one run's reason.",
    ),
}


def _coerce(name: str, raw: Any, kind: type) -> Any:
    if kind is bool and isinstance(raw, str):
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        return raw  # left as is: the system check reports it
    if kind in (int, float) and isinstance(raw, str):
        try:
            return kind(raw)
        except ValueError:
            return raw
    if kind is tuple and isinstance(raw, str):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


class JobsSettings:
    """Attribute access resolves ``FUSION_JOBS_<NAME>`` on every read."""

    def __getattr__(self, name: str) -> Any:
        try:
            spec = SETTINGS[name]
        except KeyError:
            raise AttributeError(f"unknown fusion_jobs setting {name!r}") from None
        full = PREFIX + name
        if hasattr(django_settings, full):
            raw = getattr(django_settings, full)
        elif full in os.environ:
            raw = os.environ[full]
        else:
            return spec.default
        if raw is None:
            return spec.default
        return _coerce(full, raw, spec.kind)

    def source(self, name: str) -> str:
        full = PREFIX + name
        if hasattr(django_settings, full):
            return "settings"
        if full in os.environ:
            return "environment"
        return "default"


jobs_settings = JobsSettings()
