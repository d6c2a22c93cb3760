"""A duplicate delivery of a running run (an ambiguous publish, a relay replay) is skipped without
costing the running attempt its recorded outcome or its hard-limit watch."""

from __future__ import annotations

import pytest

import fusion_jobs
from fusion_jobs.models import JobRun
from tests.conftest import purge_queues, wait_for
from tests.system.faults.hostile import QUEUE, message, message_count, publish
from tests.testapp.models import Marker

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_copies_of_a_running_message_do_not_lose_its_outcome(make_worker, broker_settings):
    purge_queues(queues=(QUEUE,))
    worker = make_worker(queues=(QUEUE,), processes=1, threads=4)
    handle = fusion_jobs.enqueue("t-hostile-record", label="dup", seconds=4)
    wait_for(lambda: Marker.objects.filter(label="dup:start").exists(), what="the first copy to start")

    copy = message("t-hostile-record", {"label": "dup", "seconds": 4}, message_id=handle.run_id)
    publish(copy, copy)
    wait_for(lambda: worker.output().count("duplicate delivery") >= 2, what="both copies to be skipped")

    run = wait_for(
        lambda: JobRun.objects.filter(pk=handle.run_id, finished_at__isnull=False).first(),
        timeout=30,
        what="the run to be recorded as finished",
    )
    assert run.status == "succeeded", (run.status, run.error)
    assert run.attempts == 1
    assert Marker.objects.filter(label="dup:start").count() == 1
    assert Marker.objects.filter(label="dup:end").count() == 1
    assert message_count(QUEUE) == 0 and message_count(f"{QUEUE}.XQ") == 0
    # One line per skipped copy: fusion-jobs says why, Dramatiq's own "was skipped" warning is dropped.
    assert worker.output().count("was skipped") == 0
