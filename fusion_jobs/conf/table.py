"""The settings table: every ``FUSION_JOBS_*`` setting, one line of declaration each.

README's settings table repeats each ``doc`` text word for word (``tests/unit/test_conf.py`` checks it):
a new setting adds an entry here and a row there.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from .setting import Setting

#: What a failed publish does (``ON_PUBLISH_ERROR``, or a task's ``on_publish_error``).
PUBLISH_ERROR_POLICIES = ("inline", "raise", "outbox")

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
