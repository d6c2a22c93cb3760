"""A plain Dramatiq actor's ``send()`` without a broker: run inline, with its run row.

The actor and its options are tested without a database in tests/unit/test_dramatiq_actors.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from fusion_jobs.models import JobRun
from tests.unit.test_dramatiq_actors import actor, calls  # noqa: F401  (actor: the fixture)


@pytest.mark.django_db
def test_send_without_a_broker_runs_inline_with_a_run_row(
    actor: Any,  # noqa: F811 (the imported fixture)
    django_capture_on_commit_callbacks: Any,
) -> None:
    calls.clear()
    with django_capture_on_commit_callbacks(execute=True):  # inline runs start after the commit
        message = actor.send(3, b=4)
    run = JobRun.objects.get(pk=message.message_id)
    assert (run.mode, run.status, run.kwargs, run.result) == ("inline", "succeeded", {"a": 3, "b": 4}, 7)
    assert run.enqueued_by == f"{__name__}:test_send_without_a_broker_runs_inline_with_a_run_row"
    assert calls == [(3, 4)]
    delayed = actor.send_with_options(args=(1,), time_limit=10**9)  # ignored per message, logged
    assert JobRun.objects.get(pk=delayed.message_id).execution_timeout == 5.0
