"""Fixtures for the scheduler tests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from fusion_jobs.scheduler import overlap
from tests.scheduler.helpers import FakeClock, Recorder


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(autouse=True)
def _fresh_overlap_cache() -> Iterator[None]:
    overlap.forget_cached_schedules()
    yield
    overlap.forget_cached_schedules()
