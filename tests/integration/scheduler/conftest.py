"""Fixtures for the scheduler tests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from fusion_jobs import admission
from tests.support.scheduler import FakeClock, Recorder


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(autouse=True)
def _fresh_admission_cache() -> Iterator[None]:
    admission.forget_cached_schedules()
    yield
    admission.forget_cached_schedules()
