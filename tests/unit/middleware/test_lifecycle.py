"""RunLifecycle's arithmetic: the retry backoff. Workers that die mid-run: tests/integration/middleware/test_lifecycle.py."""

from __future__ import annotations

import pytest

from fusion_jobs.middleware.lifecycle import backoff_seconds
from fusion_jobs.registry import get_task


@pytest.mark.parametrize(
    ("retries_done", "low", "high"),
    # A task may retry (nearly) forever, and a message's retries option may be up to 2**31 - 1: past
    # ~1020 retries min * 2**retries overflowed a float, and the attempt's outcome was never written.
    [(0, 0.2, 0.3), (1, 0.4, 0.6), (10, 1.0, 1.0), (1100, 1.0, 1.0), (10**6, 1.0, 1.0)],
)
def test_backoff_doubles_with_jitter_and_is_capped(settings, retries_done, low, high):
    settings.FUSION_JOBS_RETRY_MIN_BACKOFF = 0.2
    settings.FUSION_JOBS_RETRY_MAX_BACKOFF = 1.0
    task_obj = get_task("t-record")  # no backoff of its own: the settings apply
    delays = [backoff_seconds(task_obj, retries_done) for _ in range(50)]
    assert all(low <= delay <= high for delay in delays)
