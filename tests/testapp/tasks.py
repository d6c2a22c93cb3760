"""Tasks the test suite runs, inline and on a real worker. Their effects are rows in Marker."""

from __future__ import annotations

import os
import time

import fusion_jobs
from tests.testapp.models import Marker


@fusion_jobs.task(name="t-record", execution_timeout="30s", max_retries=0)
def record(label: str, value: object = None) -> dict[str, object]:
    Marker.objects.create(label=label, value=value)
    return {"label": label, "value": value, "pid": os.getpid()}


@fusion_jobs.task(
    name="t-fail-then-pass", execution_timeout="30s", max_retries=3, min_backoff=0.2, max_backoff=0.5
)
def fail_then_pass(label: str, failures: int) -> str:
    done = Marker.objects.filter(label=label).count()
    Marker.objects.create(label=label, value={"attempt": done + 1})
    if done < failures:
        raise RuntimeError(f"planned failure {done + 1} of {failures}")
    return "ok"


@fusion_jobs.task(
    name="t-always-fail", execution_timeout="30s", max_retries=2, min_backoff=0.2, max_backoff=0.3
)
def always_fail(label: str) -> None:
    Marker.objects.create(label=label)
    raise ValueError(f"always fails <script>alert('{label}')</script>")


@fusion_jobs.task(name="t-sleep", execution_timeout="1s", max_retries=0)
def sleep_past_timeout(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # pure Python, so the soft time limit can interrupt it
        time.sleep(0.01)


@fusion_jobs.task(name="t-slow", execution_timeout="60s", max_retries=0)
def slow(label: str, seconds: float) -> str:
    Marker.objects.create(label=f"{label}:start", value={"pid": os.getpid()})
    time.sleep(seconds)
    Marker.objects.create(label=f"{label}:end")
    return "done"


@fusion_jobs.task(name="t-progress", execution_timeout="30s", max_retries=0)
def progress(steps: int) -> int:
    for i in range(1, steps + 1):
        fusion_jobs.report_progress("stepping", i, steps)
    return steps


@fusion_jobs.task(name="t-echo", max_retries=0)
def echo(**kwargs: object) -> dict[str, object]:
    return {"kwargs": kwargs, "types": {k: type(v).__name__ for k, v in kwargs.items()}}


@fusion_jobs.task(name="t-crashable", queue="fj-crash", execution_timeout="60s", max_retries=0)
def crashable(label: str, seconds: float) -> str:
    """Runs on its own queue so a test can SIGKILL the worker running it without hurting others."""
    Marker.objects.create(label=f"{label}:start", value={"pid": os.getpid()})
    time.sleep(seconds)
    Marker.objects.create(label=f"{label}:end", value={"pid": os.getpid()})
    return "survived"


@fusion_jobs.task(name="t-kills-worker", queue="fj-crash", execution_timeout="60s", max_retries=5)
def kills_worker(label: str) -> None:
    """A poison task: it kills the process running it, every time."""
    Marker.objects.create(label=label, value={"pid": os.getpid()})
    os.kill(os.getpid(), 9)


@fusion_jobs.task(name="t-c-block", queue="fj-crash", execution_timeout="1s", max_retries=2)
def c_block(seconds: float) -> None:
    """Blocks in one C call (a sleep), where Dramatiq's soft time limit cannot interrupt it."""
    time.sleep(seconds)


@fusion_jobs.task(name="t-db-slow", queue="fj-crash", execution_timeout="60s", max_retries=3, min_backoff=0.5)
def db_slow(label: str, seconds: float) -> str:
    """Uses the database before and after a pause, so a database restart in between hits it."""
    Marker.objects.create(label=f"{label}:start", value={"pid": os.getpid()})
    time.sleep(seconds)
    Marker.objects.create(label=f"{label}:end")
    return "done"


@fusion_jobs.task(name="t-soak", execution_timeout="30s", max_retries=12, min_backoff=0.2, max_backoff=2)
def soak(label: str, fail_rate: float = 0.1, max_ms: int = 30, min_ms: int = 0) -> str:
    """Soak-test work: a random pause (min_ms..max_ms), a random failure, and one Marker per success."""
    import random

    time.sleep(random.uniform(min_ms / 1000, max_ms / 1000))
    if random.random() < fail_rate:
        raise RuntimeError("random soak failure")
    Marker.objects.create(label=label)
    return label


# --- Crons and single-flight (tests/integration/scheduler) ---------------------------------------------------


@fusion_jobs.task(name="t-cron-record", execution_timeout="30s", max_retries=0)
def cron_record(label: str) -> dict[str, object]:
    """What every test cron runs: one Marker per execution, naming the run (and so its tick)."""
    run_id = fusion_jobs.current_run_id()
    Marker.objects.create(label=label, value={"run": run_id, "pid": os.getpid()})
    return {"run": run_id}


@fusion_jobs.task(name="t-cron-single-flight", execution_timeout="60s", max_retries=0, single_flight=True)
def cron_single_flight(label: str, seconds: float = 0.0) -> str:
    Marker.objects.create(label=f"{label}:start", value={"run": fusion_jobs.current_run_id()})
    time.sleep(seconds)
    Marker.objects.create(label=f"{label}:end", value={"run": fusion_jobs.current_run_id()})
    return "done"


@fusion_jobs.task(
    name="t-cron-keyed",
    execution_timeout="60s",
    max_retries=0,
    single_flight=lambda account, **_: f"account-{account}",
)
def cron_keyed(account: int, label: str, seconds: float = 0.0) -> str:
    Marker.objects.create(label=f"{label}:start", value={"account": account})
    time.sleep(seconds)
    return "done"


# --- Outcomes PostgreSQL cannot store as they are (tests/integration/test_api_validation.py) -------------


@fusion_jobs.task(name="t-nul-result", execution_timeout="30s", max_retries=0)
def nul_result(label: str) -> dict[str, object]:
    """Returns text with a NUL and a lone surrogate: stored with U+FFFD in their place."""
    Marker.objects.create(label=label)
    return {"text": "a\x00b", "lone": "\ud800", "label": label}


@fusion_jobs.task(name="t-nul-error", execution_timeout="30s", max_retries=0)
def nul_error(label: str) -> None:
    """Fails with a NUL and a lone surrogate in its message (and so in its traceback)."""
    Marker.objects.create(label=label)
    raise ValueError(f"bad byte \x00 and \udc80 in {label}")


# --- Duplicate deliveries and hostile messages (tests/system/faults/test_duplicate_delivery.py, --------
# --- tests/system/faults/test_hostile_messages.py): their own queue, so a test may break its worker ----


@fusion_jobs.task(name="t-hostile-record", queue="fj-hostile", execution_timeout="30s", max_retries=0)
def hostile_record(label: str, seconds: float = 0.0, **extra: object) -> str:
    """One Marker per start and per end: how many times the body ran (``extra`` is ignored)."""
    Marker.objects.create(label=f"{label}:start", value={"pid": os.getpid()})
    time.sleep(seconds)
    Marker.objects.create(label=f"{label}:end")
    return label


@fusion_jobs.task(name="t-hostile-fail", queue="fj-hostile", execution_timeout="30s", max_retries=0)
def hostile_fail(label: str) -> None:
    Marker.objects.create(label=label)
    raise ValueError(f"planned failure {label}")


@fusion_jobs.task(name="t-hostile-sleep", queue="fj-hostile", execution_timeout="1s", max_retries=0)
def hostile_sleep(label: str, seconds: float) -> str:
    """Sleeps in pure Python (the soft limit can stop it); a Marker only if it got to the end."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)
    Marker.objects.create(label=label)
    return label


@fusion_jobs.task(name="t-hostile-kill-thread", queue="fj-hostile", execution_timeout="30s", max_retries=0)
def hostile_kill_thread(label: str) -> None:
    """Breaks the Dramatiq worker thread running it, so the thread dies after the task returns.

    With its broker gone, the thread's ``emit_after`` raises inside Dramatiq's own error handling
    and the exception escapes the thread's loop: the shape of any bug that kills a worker thread.
    """
    import threading

    Marker.objects.create(label=label, value={"pid": os.getpid()})
    threading.current_thread().broker = None  # type: ignore[attr-defined]


@fusion_jobs.task(name="t-outbox-record", execution_timeout="30s", max_retries=0, on_publish_error="outbox")
def outbox_record(label: str) -> None:
    """Its runs stay in the outbox when publishing fails, whatever FUSION_JOBS_ON_PUBLISH_ERROR says."""
    Marker.objects.create(label=label)


# --- Metrics (tests/integration/test_metrics.py): a queue of their own, so only that test's worker runs them --


@fusion_jobs.task(name="t-metrics-record", queue="fj-metrics", execution_timeout="30s", max_retries=0)
def metrics_record(label: str) -> str:
    Marker.objects.create(label=label)
    return label


@fusion_jobs.task(
    name="t-metrics-fail",
    queue="fj-metrics",
    execution_timeout="30s",
    max_retries=2,
    min_backoff=0.2,
    max_backoff=0.3,
)
def metrics_fail(label: str) -> None:
    raise ValueError(f"always fails: {label}")


@fusion_jobs.task(name="t-metrics-sleep", queue="fj-metrics", execution_timeout="1s", max_retries=0)
def metrics_sleep(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)
