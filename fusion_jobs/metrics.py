"""Prometheus metrics of the worker processes and cron schedulers (optional: ``prometheus-client``).

``rundramatiq`` runs several independent worker processes, so metrics use prometheus_client's
multiprocess mode: the supervisor creates a private ``PROMETHEUS_MULTIPROC_DIR``, passes it to its
children, serves their merged values on ``--metrics-port`` and removes the directory when it
stops. Chosen over one port per process because a scrape then sees one target whose counters
survive a process being replaced (its files stay in the directory), and no port range has to be
allocated or discovered. Without ``prometheus-client`` every function here is a no-op, and with
it but no exporter the values live in this process's default registry (an app that already
exports that registry, django-prometheus for one, shows them).

Names follow Prometheus conventions: base units (seconds), ``_total`` on counters. This module
imports nothing from fusion_jobs but settings, so any layer may record a metric.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import shutil
import tempfile
import threading
from typing import Any

try:
    import prometheus_client
    from prometheus_client import multiprocess
except ImportError:  # the ``metrics`` extra is not installed
    prometheus_client = None  # type: ignore[assignment]
    multiprocess = None  # type: ignore[assignment]

from .utils import pid_alive

logger = logging.getLogger("fusion_jobs.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Run durations and queue waits: from a few milliseconds to the longest execution timeouts.
TIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500)
RUN_LABELS = ("task", "queue")
#: Outcome -> counter suffix; every one is also a Dramatiq-style counter by task and queue.
OUTCOMES = ("succeeded", "failed", "retried", "timed_out", "skipped")

_lock = threading.Lock()
_metrics: dict[str, Any] | None = None


def available() -> bool:
    """True when prometheus-client is installed."""
    return prometheus_client is not None


def _build() -> dict[str, Any]:
    pc = prometheus_client
    made: dict[str, Any] = {
        "started": pc.Counter(
            "fusion_jobs_runs_started", "Attempts started by a worker or inline.", RUN_LABELS
        ),
        "duration": pc.Histogram(
            "fusion_jobs_run_duration_seconds",
            "Time an attempt ran, start to outcome.",
            RUN_LABELS,
            buckets=TIME_BUCKETS,
        ),
        "queue_wait": pc.Histogram(
            "fusion_jobs_run_queue_wait_seconds",
            "Time from publishing a run's message to its attempt starting.",
            RUN_LABELS,
            buckets=TIME_BUCKETS,
        ),
        "in_progress": pc.Gauge(
            "fusion_jobs_runs_in_progress",
            "Attempts running now.",
            RUN_LABELS,
            multiprocess_mode="livesum",
        ),
        "publish_errors": pc.Counter(
            "fusion_jobs_publish_errors", "Publishes to RabbitMQ that failed (PublishError).", ("queue",)
        ),
        "relay_published": pc.Counter(
            "fusion_jobs_relay_published", "Runs the outbox relay published (retries, deferred, lost)."
        ),
        "writer_batch": pc.Histogram(
            "fusion_jobs_writer_batch_size",
            "Transitions applied per batch by a worker's batch writer.",
            buckets=BATCH_BUCKETS,
        ),
        "lost": pc.Counter(
            "fusion_jobs_lost_attempts",
            "Attempts found lost to a dead worker when their message was redelivered.",
            ("task",),
        ),
        "cron_fired": pc.Counter(
            "fusion_jobs_cron_ticks_fired", "Cron ticks that enqueued a run on time.", ("schedule",)
        ),
        "cron_late": pc.Counter(
            "fusion_jobs_cron_ticks_late",
            "Cron ticks fired more than FUSION_JOBS_CRON_GRACE after their time (a catch-up).",
            ("schedule",),
        ),
        "cron_skipped": pc.Counter(
            "fusion_jobs_cron_ticks_skipped",
            "Missed cron ticks the misfire policy did not fire (recorded as skipped runs).",
            ("schedule",),
        ),
        "cron_lease": pc.Gauge(
            "fusion_jobs_cron_lease_held",
            "1 while this runcrons process holds the scheduler's leader lease.",
            multiprocess_mode="livemax",
        ),
    }
    for outcome in OUTCOMES:
        made[outcome] = pc.Counter(
            f"fusion_jobs_runs_{outcome}", f"Attempts that ended {outcome.replace('_', ' ')}.", RUN_LABELS
        )
    return made


def _get() -> dict[str, Any] | None:
    global _metrics
    if prometheus_client is None:
        return None
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = _build()
    return _metrics


def run_started(task: str, queue: str, queue_wait: float | None = None) -> None:
    m = _get()
    if m is None:
        return
    m["started"].labels(task, queue).inc()
    m["in_progress"].labels(task, queue).inc()
    if queue_wait is not None:
        m["queue_wait"].labels(task, queue).observe(max(0.0, queue_wait))


def run_ended(task: str, queue: str, outcome: str, duration: float) -> None:
    """An attempt counted by ``run_started`` ended: ``outcome`` is one of ``OUTCOMES`` but skipped."""
    m = _get()
    if m is None:
        return
    m["in_progress"].labels(task, queue).dec()
    m[outcome].labels(task, queue).inc()
    m["duration"].labels(task, queue).observe(max(0.0, duration))


def run_skipped(task: str, queue: str) -> None:
    m = _get()
    if m is not None:
        m["skipped"].labels(task, queue).inc()


def publish_error(queue: str) -> None:
    m = _get()
    if m is not None:
        m["publish_errors"].labels(queue).inc()


def relay_published(count: int) -> None:
    m = _get()
    if m is not None and count:
        m["relay_published"].inc(count)


def writer_batch(size: int) -> None:
    m = _get()
    if m is not None:
        m["writer_batch"].observe(size)


def lost_attempt(task: str) -> None:
    m = _get()
    if m is not None:
        m["lost"].labels(task).inc()


def cron_tick(schedule: str, event: str, count: int = 1) -> None:
    """``event``: ``fired`` (on time), ``late`` (fired past the grace: a catch-up) or ``skipped``."""
    m = _get()
    if m is not None and count:
        m[f"cron_{event}"].labels(schedule).inc(count)


def cron_lease(held: bool) -> None:
    m = _get()
    if m is not None:
        m["cron_lease"].set(1 if held else 0)


class Exporter:
    """The supervisor's side: the shared directory, the HTTP endpoint, and cleanup of dead processes."""

    def __init__(self, port: int, address: str) -> None:
        if prometheus_client is None:
            raise RuntimeError(
                "metrics need prometheus-client, which is not installed (pip install 'fusion-jobs[metrics]')"
            )
        self.directory = tempfile.mkdtemp(prefix="fusion-jobs-metrics-")
        registry = prometheus_client.CollectorRegistry()
        registry.register(_LiveProcessesCollector(self.directory))
        try:
            self.server, self.thread = prometheus_client.start_http_server(port, address, registry=registry)
        except OSError:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        self.port = self.server.server_port

    def child_env(self) -> dict[str, str]:
        return {MULTIPROC_ENV: self.directory}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.directory, ignore_errors=True)


_LIVE_FILE = re.compile(r"gauge_live\w+_(\d+)\.db\Z")


class _LiveProcessesCollector:
    """prometheus_client's multiprocess collector that first forgets dead processes' live gauges.

    A worker process that died (killed, replaced) leaves its files: its counters must stay (they
    are totals), but its ``runs_in_progress`` would count forever. Checked at each scrape, so the
    supervisor's loop needs no hook.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.inner = multiprocess.MultiProcessCollector(None, path=directory)

    def collect(self) -> Any:
        for name in os.listdir(self.directory):
            found = _LIVE_FILE.match(name)
            if found and not pid_alive(int(found.group(1))):
                with contextlib.suppress(OSError):
                    multiprocess.mark_process_dead(int(found.group(1)), self.directory)
        return self.inner.collect()


def start_exporter(port: int, address: str) -> Exporter:
    """Serve the worker processes' metrics on ``address:port`` until this process exits.

    The directory is removed at exit (``atexit``); one left by a ``SIGKILL``ed supervisor is an
    empty-ish temporary directory.
    """
    exporter = Exporter(port, address)
    atexit.register(exporter.close)
    return exporter


def worker_env_directory() -> str | None:
    """The multiprocess directory this process writes to, when started by an exporting supervisor."""
    return os.environ.get(MULTIPROC_ENV) or None


def serve_process_metrics(port: int, address: str) -> None:
    """Serve this single process's metrics (``runcrons``: one process, no multiprocess directory)."""
    if prometheus_client is None:
        raise RuntimeError(
            "metrics need prometheus-client, which is not installed (pip install 'fusion-jobs[metrics]')"
        )
    _get()  # every family is listed from the first scrape, zeros included
    prometheus_client.start_http_server(port, address)


def exposed_names() -> set[str]:
    """Every sample name the worker and cron metrics can expose (dashboards and docs are checked against it)."""
    m = _get()
    if m is None:
        return set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {
        family.name + suffix
        for collector in m.values()
        for family in collector.describe()
        for suffix in suffixes[family.type]
    }
