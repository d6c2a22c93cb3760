"""The outbox: one publish-and-mark for every caller, and what each publish-error policy does."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

import fusion_jobs
from fusion_jobs.backends import use_backend
from fusion_jobs.backends.base import Outgoing
from fusion_jobs.backends.stub import StubBackend
from fusion_jobs.models import JobRun
from fusion_jobs.outbox import INLINE, KEEP, OUTBOX, RAISE, publish_and_mark
from fusion_jobs.registry import get_task
from tests.testapp.models import Marker

pytestmark = pytest.mark.django_db(transaction=True)

DOWN_URL = "amqp://guest:guest@127.0.0.1:1/"  # never contacted: the stub backend is installed


@pytest.fixture
def stub(settings: Any) -> Iterator[StubBackend]:
    settings.FUSION_JOBS_BROKER_URL = DOWN_URL
    with use_backend(StubBackend()) as backend:
        yield backend


def queued_runs(count: int) -> list[Outgoing]:
    """``count`` queued, unpublished runs of ``t-record``, as enqueue_many writes them."""
    with use_backend(StubBackend()) as refusing:
        refusing.failure = fusion_jobs.PublishError("down (test)")
        handles = fusion_jobs.enqueue_many("t-record", [{"label": f"o{i}"} for i in range(count)])
    task = get_task("t-record")
    return [Outgoing(task, h.run_id, {"label": f"o{i}"}) for i, h in enumerate(handles)]


def published(messages: Sequence[Outgoing]) -> int:
    ids = [m.run_id for m in messages]
    return JobRun.objects.filter(pk__in=ids, published_at__isnull=False).count()


def test_a_publish_reaches_the_backend_and_marks_the_runs(stub: StubBackend) -> None:
    messages = queued_runs(3)
    assert published(messages) == 0
    assert publish_and_mark(messages) is None
    assert [m.run_id for m in stub.messages] == [m.run_id for m in messages]
    assert published(messages) == 3


def test_a_publish_that_fails_marks_nothing(stub: StubBackend) -> None:
    messages = queued_runs(2)

    def refuse(part: Sequence[Outgoing]) -> None:
        raise fusion_jobs.PublishError("refused (test)")

    unpublished = publish_and_mark(messages, publish=refuse)
    assert unpublished is not None and "refused" in str(unpublished.error)
    assert published(messages) == 0 and stub.messages == []


@pytest.mark.parametrize("policy", [KEEP, OUTBOX])
def test_keep_and_outbox_leave_the_run_queued_for_the_relay(stub: StubBackend, policy: str) -> None:
    [message] = queued_runs(1)
    stub.failure = fusion_jobs.PublishError("down (test)")
    unpublished = publish_and_mark([message], policy=policy)
    assert unpublished is not None and unpublished.outcome is None
    run = JobRun.objects.get(pk=message.run_id)
    assert (run.status, run.mode, run.published_at) == ("queued", "worker", None)


def test_raise_fails_the_run_and_raises_only_where_it_may(stub: StubBackend) -> None:
    first, second = queued_runs(2)
    stub.failure = fusion_jobs.PublishError("down (test)")
    with pytest.raises(fusion_jobs.PublishError):
        publish_and_mark([first], policy=RAISE)
    unpublished = publish_and_mark([second], policy=RAISE, may_raise=False)
    assert unpublished is not None and unpublished.outcome is not None
    assert unpublished.outcome.status == "failed"
    for message in (first, second):
        run = JobRun.objects.get(pk=message.run_id)
        assert run.status == "failed" and run.error.startswith("PublishError: down (test)")


def test_inline_runs_it_here(stub: StubBackend) -> None:
    [message] = queued_runs(1)
    stub.failure = fusion_jobs.PublishError("down (test)")
    unpublished = publish_and_mark([message], policy=INLINE)
    assert unpublished is not None and unpublished.inline
    assert unpublished.outcome is not None and unpublished.outcome.status == "succeeded"
    run = JobRun.objects.get(pk=message.run_id)
    assert (run.status, run.mode, run.max_retries) == ("succeeded", "inline", 0)
    assert Marker.objects.filter(label=message.kwargs["label"]).count() == 1
