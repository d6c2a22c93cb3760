"""Tasks for the delay tests (tests/system/faults/test_delays.py), on their own queue ``fj-delay``.

Not autodiscovered by default: the test module imports this, and the worker it starts finds it
through ``FUSION_JOBS_TASK_MODULES=tasks,delay_tasks``, so no other test's worker consumes them.
"""

from __future__ import annotations

import time

import fusion_jobs
from tests.testapp.models import Marker

#: Backoff of ``t-delay-retry``: longer than the consumer_timeout the test lowers RabbitMQ to.
RETRY_BACKOFF = 8.0


@fusion_jobs.task(name="t-delay-record", queue="fj-delay", execution_timeout="30s", max_retries=0)
def delay_record(label: str) -> str:
    """One Marker per execution, with the wall-clock time it ran at."""
    Marker.objects.create(label=label, value={"at": time.time(), "run": fusion_jobs.current_run_id()})
    return label


@fusion_jobs.task(
    name="t-delay-retry",
    queue="fj-delay",
    execution_timeout="30s",
    max_retries=1,
    min_backoff=RETRY_BACKOFF,
    max_backoff=RETRY_BACKOFF,
)
def delay_retry(label: str) -> str:
    """Fails its first attempt, then succeeds: one Marker per attempt, with its time."""
    attempt = Marker.objects.filter(label=label).count() + 1
    Marker.objects.create(label=label, value={"at": time.time(), "attempt": attempt})
    if attempt == 1:
        raise RuntimeError("first attempt fails on purpose")
    return label
