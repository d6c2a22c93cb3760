"""The stub backend: new runs are queued in memory, and run in this process when drained."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import fusion_jobs
from fusion_jobs.backends import use_backend
from fusion_jobs.backends.stub import StubBackend
from fusion_jobs.marking import flush_marks
from fusion_jobs.models import JobRun
from fusion_jobs.registry import get_task
from tests.testapp.models import Marker

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stub(settings: Any) -> Iterator[StubBackend]:
    settings.FUSION_JOBS_BROKER_URL = ""  # jobs off: only the installed backend queues runs
    with use_backend(StubBackend()) as backend:
        yield backend


def test_the_stub_runs_what_it_recorded_when_drained(stub: StubBackend) -> None:
    handle = fusion_jobs.enqueue("t-record", label="drained")
    assert handle.mode == "queued" and not Marker.objects.filter(label="drained").exists()
    [outcome] = stub.drain()
    assert outcome.status == "succeeded" and stub.messages == []
    assert JobRun.objects.get(pk=handle.run_id).status == "succeeded"
    assert Marker.objects.filter(label="drained").count() == 1


def test_task_enqueue_goes_through_the_installed_backend(stub: StubBackend) -> None:
    handle = get_task("t-record").enqueue(label="via the task")
    assert handle.mode == "queued"
    assert [m.run_id for m in stub.messages] == [handle.run_id]
    assert flush_marks(10)
    assert JobRun.objects.get(pk=handle.run_id).published_at is not None
    assert not Marker.objects.filter(label="via the task").exists()
