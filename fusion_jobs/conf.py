"""Every ``FUSION_JOBS_*`` setting, with its default and what a valid value is, read on each access.

A setting is looked up in Django settings first, then in the environment variable of the same
name, then falls back to the default here. Reading on each access (as procrastinate's settings
object does) keeps ``override_settings`` and per-test environment changes working. Values are
validated by system checks (``fusion_jobs.checks``), not here, so a bad value never breaks an
import: each ``Setting`` declares its type and range, and the checks report every value that
falls outside it (a new setting adds one line here and is validated like the others).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from django.conf import settings as django_settings

#: What a failed publish does (``ON_PUBLISH_ERROR``, or a task's ``on_publish_error``).
PUBLISH_ERROR_POLICIES = ("inline", "raise", "outbox")

PREFIX = "FUSION_JOBS_"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

#: Dramatiq's rule for queue names (``dramatiq.broker``), minus its reserved ``.DQ``/``.XQ`` suffixes.
QUEUE_NAME = r"[A-Za-z_][A-Za-z0-9._-]*"
#: Five fields or an @nickname, or empty: the shape only (``runcrons`` reports a bad field by name).
_CRONTAB_SHAPE = r"\s*(@[a-z]+|\S+(\s+\S+){4})?\s*"
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _amqp_url_problem(value: str) -> str | None:
    """What is wrong with a broker URL, never quoting it (it holds the password); None when fine."""
    if not value:
        return None
    try:
        parts = urlsplit(value)
        if parts.scheme not in ("amqp", "amqps"):
            return f"scheme {parts.scheme or '(none)'!r} is not amqp or amqps"
        if not parts.hostname:
            return "it names no host"
        _ = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        return str(exc)
    return None


def _queue_problem(value: str) -> str | None:
    if value.endswith((".DQ", ".XQ")):
        return "names ending in .DQ or .XQ are Dramatiq's delay and dead-letter queues"
    return None


def _dotted_problem(value: str) -> str | None:
    return None if _DOTTED.match(value) else f"{value!r} is not a dotted Python path"


def _number(value: float) -> str:
    return f"{int(value)}" if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Setting:
    """One setting: default, type, documentation, and the range a system check enforces.

    ``low``/``high`` bound numbers (``low_open``: strictly above ``low``); ``choices`` or
    ``pattern`` (a full match) constrain strings, and each item of a tuple setting; ``validate``
    returns a problem (never quoting a secret value) or None. ``check_id`` overrides the id
    the type implies (E004 booleans, E005 numbers, E006 strings, E007 lists); ``expect`` words
    the valid values for the hint when the declaration alone would not say it well.
    """

    default: Any
    kind: type
    doc: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    validate: Callable[[str], str | None] | None = None
    check_id: str | None = None
    secret: bool = False
    expect: str | None = None

    @property
    def constrained(self) -> bool:
        """Whether a range is declared beyond the type (every number, string and list must have one)."""
        if self.kind is bool:
            return True
        if self.kind in (int, float):
            return self.low is not None
        return bool(self.choices or self.pattern or self.validate)

    def expectation(self) -> str:
        """What a valid value looks like, for the check's hint."""
        if self.expect:
            return self.expect
        if self.kind is bool:
            return "True or False (1/0, true/false, yes/no, on/off in the environment)"
        if self.kind in (int, float):
            what = "a whole number" if self.kind is int else "a number"
            parts = []
            if self.low is not None:
                parts.append(f"{'above' if self.low_open else 'at least'} {_number(self.low)}")
            if self.high is not None:
                parts.append(f"at most {_number(self.high)}")
            return f"{what} {' and '.join(parts)}".strip()
        if self.choices:
            each = f"one of {', '.join(repr(c) for c in self.choices)}"
        elif self.pattern:
            each = f"matching {self.pattern}"
        else:
            each = "valid"
        if self.kind is tuple:
            return f"a list of strings (comma-separated in the environment), each {each}"
        return f"a string {each}"

    def problem(self, value: Any) -> str | None:
        """Why ``value`` (as read, after coercion) is invalid, or None when it is valid."""
        if self.kind is bool:
            return None if isinstance(value, bool) else "not a boolean"
        if self.kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return "not a number"
            if self.kind is int and not float(value).is_integer():
                return "not a whole number"
            if value != value or value in (float("inf"), float("-inf")):
                return "not a finite number"
            if self.low is not None and (value <= self.low if self.low_open else value < self.low):
                return "out of range"
            if self.high is not None and value > self.high:
                return "out of range"
            return None
        if self.kind is tuple:
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                return "not a list of strings"
            for item in value:
                problem = self._string_problem(item)
                if problem:
                    return problem
            return None
        if not isinstance(value, str):
            return "not a string"
        return self._string_problem(value)

    def _string_problem(self, value: str) -> str | None:
        if self.choices and value not in self.choices:
            return f"{value!r} is not one of {', '.join(self.choices)}"
        if self.pattern and not re.fullmatch(self.pattern, value):
            return f"{value!r} does not match {self.pattern}"
        return self.validate(value) if self.validate else None


#: The settings table; README's table is generated from the same text.
SETTINGS: dict[str, Setting] = {
    "BROKER_URL": Setting(
        "",
        str,
        "RabbitMQ URL (`amqp://user:pass@host:5672/vhost`). Empty: jobs disabled, runs inline. Unset: the "
        "RabbitMQ URL of django-dramatiq's `DRAMATIQ_BROKER`, if there is one.",
        validate=_amqp_url_problem,
        check_id="fusion_jobs.E001",
        secret=True,
        expect="amqp://user:password@host:5672/vhost (RabbitMQ), or empty to run jobs inline",
    ),
    "EAGER": Setting(
        False, bool, "Run every job inline even when a broker is configured (tests, debugging)."
    ),
    "ON_PUBLISH_ERROR": Setting(
        "inline",
        str,
        "What `enqueue()` does when publishing fails: `inline` (run it here), `raise`, or `outbox`.",
        choices=PUBLISH_ERROR_POLICIES,
        check_id="fusion_jobs.E003",
    ),
    "INLINE_RAISE": Setting(
        False,
        bool,
        "Re-raise a task's exception from an inline `enqueue()` called outside a transaction (inside one, the run records it).",
    ),
    "MAX_PAYLOAD_BYTES": Setting(
        256 * 1024,
        int,
        "Largest JSON payload `enqueue()` accepts, in bytes.",
        low=1,
        high=128 * 1024 * 1024,  # RabbitMQ's default max_message_size
    ),
    "RESULT_MAX_BYTES": Setting(
        64 * 1024, int, "Results larger than this (as JSON) are stored truncated.", low=1
    ),
    "DEFAULT_QUEUE": Setting(
        "default",
        str,
        "Queue for tasks that name none.",
        pattern=QUEUE_NAME,
        validate=_queue_problem,
        expect="a queue name: a letter or '_', then letters, digits, '.', '_' or '-'",
    ),
    "QUEUE_NAMESPACE": Setting(
        "",
        str,
        "Prefix of every queue this project declares (`<namespace>.<queue>`), so projects sharing a "
        "RabbitMQ vhost never consume each other's messages. Empty: no prefix.",
        pattern=r"([A-Za-z0-9_][A-Za-z0-9_-]*)?",
        expect="letters, digits, '_' and '-' (e.g. 'shop' gives queues 'shop.default'), or empty",
    ),
    "DEFAULT_MAX_RETRIES": Setting(
        3, int, "Retries after a failure for tasks that set no `max_retries`.", low=0
    ),
    "DEFAULT_EXECUTION_TIMEOUT": Setting(
        600.0, float, "Execution timeout in seconds for tasks that set none.", low=0, low_open=True
    ),
    "RETRY_MIN_BACKOFF": Setting(
        15.0, float, "First retry delay in seconds; doubles on each retry.", low=0, low_open=True
    ),
    "RETRY_MAX_BACKOFF": Setting(
        600.0,
        float,
        "Cap on the retry delay in seconds (keep under consumer timeout).",
        low=0,
        low_open=True,
    ),
    "MAX_LOST_ATTEMPTS": Setting(
        3, int, "Attempts lost to a dead worker before the run is failed instead of redelivered.", low=1
    ),
    "STUCK_GRACE_SECONDS": Setting(
        120.0,
        float,
        "Grace after a run's timeout before the sweeper marks a silent `running` run lost.",
        low=0,
    ),
    "HARD_LIMIT_GRACE": Setting(
        30.0,
        float,
        "Seconds past its timeout before a task stuck in a C call has its worker process restarted.",
        low=0,
        low_open=True,
    ),
    "PREPARED_STATEMENTS": Setting(
        True,
        bool,
        "PostgreSQL: prepare the run-recording statements once per connection. Turn off behind a "
        "transaction-pooling proxy that can't keep prepared statements (PgBouncer < 1.21); already "
        "off when `OPTIONS` set `server_side_binding` without `prepare_threshold`.",
    ),
    "PUBLISH_TIMEOUT": Setting(
        2.0, float, "Seconds a publish may take (connect + confirm) before it fails.", low=0, low_open=True
    ),
    "MAX_PRIORITY": Setting(
        0,
        int,
        "RabbitMQ priority levels per queue (`x-max-priority`), 0 for none. A task's priority (-100..100, Django's scale) maps onto them. Queues keep the arguments they were declared with: changing this needs them deleted (or a new vhost) first.",
        low=0,
        high=255,
    ),
    "QUEUE_TYPE": Setting(
        "classic",
        str,
        "RabbitMQ queue type: `classic`, or `quorum` (replicated across a cluster; no priorities on "
        "RabbitMQ 3.10-3.11). A queue's type cannot change in place: switch with `manage.py migratequeues`.",
        choices=("classic", "quorum"),
    ),
    "DELIVERY_LIMIT": Setting(
        20,
        int,
        "Quorum queues: deliveries of one message (`x-delivery-limit`) before RabbitMQ dead-letters it "
        "to the `.XQ` queue, a guard behind `MAX_LOST_ATTEMPTS`. 0: no limit.",
        low=0,
    ),
    "CONSUMER_TIMEOUT": Setting(
        1800.0,
        float,
        "RabbitMQ's `consumer_timeout` in seconds, used to warn about long tasks.",
        low=0,
        low_open=True,
    ),
    "PROCESSES": Setting(2, int, "Worker processes started by `rundramatiq`.", low=1, high=1024),
    "THREADS": Setting(8, int, "Threads per worker process started by `rundramatiq`.", low=1, high=4096),
    "METRICS_PORT": Setting(
        0,
        int,
        "Port on which `rundramatiq` serves its worker processes' Prometheus metrics (`--metrics-port`; needs the `metrics` extra). 0: not served.",
        low=0,
        high=65535,
    ),
    "CRON_METRICS_PORT": Setting(
        0,
        int,
        "Port on which `runcrons` serves its Prometheus metrics (ticks fired, late, skipped; lease held). 0: not served.",
        low=0,
        high=65535,
    ),
    "METRICS_ADDRESS": Setting(
        "127.0.0.1",
        str,
        "Address the metrics port binds to; `0.0.0.0` exposes it to the network (the page has no authentication).",
        pattern=r"[0-9A-Za-z.:-]+",
        expect="an IP address or host name, e.g. 127.0.0.1",
    ),
    "METRICS_TOKEN": Setting(
        "",
        str,
        "Bearer token accepted by the database metrics view (`fusion_jobs.urls`) besides a staff session with permission to view runs. Empty: such staff only.",
        secret=True,
        validate=lambda value: (
            None
            if value == "" or re.fullmatch(r"[!-~]{16,4096}", value)
            else "a token must be 16 or more printable ASCII characters without spaces"
        ),
    ),
    "PROGRESS_INTERVAL": Setting(
        1.0, float, "Minimum seconds between two progress writes of one run.", low=0
    ),
    "RUN_RETENTION_DAYS": Setting(
        14,
        int,
        "Finished runs older than this are pruned (0: every finished run, as `prunejobruns --days 0`).",
        low=0,
    ),
    "TASK_MODULES": Setting(
        ("tasks",),
        tuple,
        "Module names autodiscovered in every installed app.",
        validate=_dotted_problem,
        expect="a list of module names (comma-separated in the environment), e.g. ('tasks',)",
    ),
    "CRON_REGISTRARS": Setting(
        (),
        tuple,
        "Dotted paths of functions `runcrons` calls at start-up to declare crons with `ensure_cron` "
        "(e.g. `example.agent.crons.register_agent_cron`).",
        validate=_dotted_problem,
        expect="a list of dotted paths to functions (comma-separated in the environment)",
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
        low=0,
        low_open=True,
    ),
    "CRON_LEASE_TTL": Setting(
        15.0,
        float,
        "Seconds the `runcrons` leader lease lasts unrenewed: a standby takes over this long after the leader dies.",
        low=0,
        low_open=True,
    ),
    "CRON_GRACE": Setting(
        60.0,
        float,
        "Seconds after its time a tick still fires as on time; a later one is missed and follows the misfire policy.",
        low=0,
    ),
    "CRON_CATCHUP_LIMIT": Setting(
        100,
        int,
        "Most missed ticks misfire policy `all` fires after an outage (the most recent ones).",
        low=1,
    ),
    "CRON_SKIPPED_RECORD_LIMIT": Setting(
        20,
        int,
        "Skipped ticks recorded as `skipped` runs per catch-up; the others are counted in one run's reason.",
        low=0,
    ),
    "WORKER_HEARTBEAT": Setting(
        5.0,
        float,
        "Seconds between two heartbeats of a worker process or `runcrons` (one upsert each): stale after 3 missed, gone after 60.",
        low=0,
        low_open=True,
        high=3600,
    ),
    "WORKER_FORGET_AFTER": Setting(
        86400.0,
        float,
        "Seconds after its last heartbeat a worker's registry row is deleted.",
        low=0,
        low_open=True,
    ),
    "RELOAD_ON_MIGRATE": Setting(
        True,
        bool,
        "`rundramatiq` and `runcrons` replace their processes gracefully when a migration is applied after they started (in-flight runs finish first).",
    ),
    "CRON_PRUNE_RUNS": Setting(
        "17 3 * * *",
        str,
        "Crontab (UTC) on which `runcrons` schedules `fusion-jobs-prune-runs`. Empty: not scheduled.",
        pattern=_CRONTAB_SHAPE,
        expect="a five-field crontab expression or @nickname (e.g. '17 3 * * *'), or empty to turn it off",
    ),
    "CRON_SWEEP_STUCK": Setting(
        "*/5 * * * *",
        str,
        "Crontab (UTC) on which `runcrons` schedules `fusion-jobs-sweep-stuck`. Empty: not scheduled.",
        pattern=_CRONTAB_SHAPE,
        expect="a five-field crontab expression or @nickname (e.g. '*/5 * * * *'), or empty to turn it off",
    ),
    "CRON_ROLLUP": Setting(
        "*/5 * * * *",
        str,
        "Crontab (UTC) on which `runcrons` schedules `fusion-jobs-rollup` (the dashboard's stored summaries). "
        "Empty: not scheduled.",
        pattern=_CRONTAB_SHAPE,
        expect="a five-field crontab expression or @nickname (e.g. '*/5 * * * *'), or empty to turn it off",
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


#: django-dramatiq's ``DRAMATIQ_BROKER["BROKER"]`` values that are RabbitMQ (its default included).
RABBITMQ_BROKERS = ("dramatiq.brokers.rabbitmq.RabbitmqBroker", "dramatiq.brokers.rabbitmq.RabbitMQBroker")


def dramatiq_broker_url() -> tuple[str, str | None]:
    """The RabbitMQ URL of django-dramatiq's ``DRAMATIQ_BROKER`` setting, and why there is none.

    Read only while ``FUSION_JOBS_BROKER_URL`` is unset, so a django-dramatiq project switches
    without repeating its URL. ``OPTIONS["url"]`` is used as is; pika's ``host``/``port``/
    ``virtual_host``/``credentials`` options are turned into a URL. Returns ``("", problem)`` for
    a broker fusion-jobs cannot run on (Redis, stub), ``("", None)`` when the setting is absent.
    """
    config = getattr(django_settings, "DRAMATIQ_BROKER", None)
    if config is None:
        return "", None
    if not isinstance(config, dict):
        return "", f"DRAMATIQ_BROKER is a {type(config).__name__}, not a dict"
    path = config.get("BROKER", RABBITMQ_BROKERS[0])
    if path not in RABBITMQ_BROKERS:
        return "", f"DRAMATIQ_BROKER['BROKER'] is {str(path)[:200]!r}: fusion-jobs runs on RabbitMQ only"
    options = config.get("OPTIONS") or {}
    if not isinstance(options, dict):
        return "", "DRAMATIQ_BROKER['OPTIONS'] is not a dict"
    url = options.get("url")
    if isinstance(url, str) and url:
        return url, None
    if url:
        return "", "DRAMATIQ_BROKER['OPTIONS']['url'] is not a single URL string"
    for name in (
        "ssl_options",
        "parameters",
    ):  # TLS, a cluster: dropping them changes where and how we connect
        if options.get(name):
            return "", (
                f"DRAMATIQ_BROKER['OPTIONS'] sets {name!r}, which no broker URL carries over: "
                "set FUSION_JOBS_BROKER_URL (amqps:// for TLS)"
            )
    host = options.get("host") or "127.0.0.1"
    credentials = options.get("credentials")
    user = str(getattr(credentials, "username", "guest"))
    password = str(getattr(credentials, "password", "guest"))
    vhost = str(options.get("virtual_host") or "/")
    return (
        f"amqp://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{int(options.get('port') or 5672)}"
        f"/{quote(vhost, safe='')}",
        None,
    )


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
        elif name == "BROKER_URL":
            return dramatiq_broker_url()[0]  # a django-dramatiq project's RabbitMQ, or ""
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
        if name == "BROKER_URL" and dramatiq_broker_url()[0]:
            return "DRAMATIQ_BROKER"
        return "default"


jobs_settings = JobsSettings()


def queue_namespace() -> str:
    """``FUSION_JOBS_QUEUE_NAMESPACE`` when valid, else empty (the system check reports a bad one)."""
    value = jobs_settings.QUEUE_NAMESPACE
    return value if isinstance(value, str) and SETTINGS["QUEUE_NAMESPACE"].problem(value) is None else ""


def broker_queue(queue: str) -> str:
    """The RabbitMQ queue a logical queue name lives in: ``<namespace>.<queue>``, or the name itself.

    Everything that declares, publishes to or consumes from a queue uses this name; run rows,
    task declarations and the admin keep the logical one.
    """
    namespace = queue_namespace()
    return f"{namespace}.{queue}" if namespace else queue


def logical_queue(name: str) -> str:
    """The inverse of :func:`broker_queue` (a name outside the namespace is returned as is)."""
    namespace = queue_namespace()
    if namespace and name.startswith(namespace + "."):
        return name[len(namespace) + 1 :]
    return name
