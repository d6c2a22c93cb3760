"""FUSION_JOBS_QUEUE_NAMESPACE: two projects on one RabbitMQ vhost never consume each other's runs.

Before it, a worker of project B consumed project A's messages from the shared queue names,
recreated rows for runs it did not own, and A's runs stayed ``queued`` forever.
"""

from __future__ import annotations

import os
import time

import pika
import pytest

import fusion_jobs
from fusion_jobs.conf import broker_queue, logical_queue
from fusion_jobs.models import JobRun
from tests.conftest import BROKER_URL, purge_queues, wait_for
from tests.support.processes import descendants
from tests.system.faults.test_supervision import marker_pid

pytestmark = [pytest.mark.broker]


def test_queue_names_are_prefixed_only_at_rabbitmq(settings):
    settings.FUSION_JOBS_QUEUE_NAMESPACE = ""
    assert broker_queue("default") == "default"
    settings.FUSION_JOBS_QUEUE_NAMESPACE = "shop"
    assert broker_queue("default") == "shop.default"
    assert broker_queue("default.DQ") == "shop.default.DQ"
    assert logical_queue("shop.default") == "default"
    assert fusion_jobs.get_jobs_status()["namespace"] == "shop"


def _delete(namespaces: tuple[str, ...], queue: str = "fj-crash") -> None:
    connection = pika.BlockingConnection(pika.URLParameters(BROKER_URL))
    try:
        channel = connection.channel()
        for namespace in namespaces:
            for suffix in ("", ".DQ", ".XQ"):
                channel.queue_delete(f"{namespace}.{queue}{suffix}")
    finally:
        connection.close()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_namespaces_on_one_vhost_only_run_their_own_runs(broker_settings, make_worker, settings):
    a, b = f"fjA{os.getpid()}", f"fjB{os.getpid()}"
    try:
        purge_queues(queues=("fj-crash",), namespace="")
        worker_b = make_worker(queues=("fj-crash",), threads=1, env={"FUSION_JOBS_QUEUE_NAMESPACE": b})
        assert f"namespace={b} " in worker_b.output()

        settings.FUSION_JOBS_QUEUE_NAMESPACE = a  # the test process publishes as project A
        run_a = fusion_jobs.enqueue("t-crashable", label="ns-a", seconds=0)
        time.sleep(4)
        row = JobRun.objects.get(pk=run_a.run_id)
        assert row.status == "queued", (
            f"project B's worker took project A's run:\n{worker_b.output()[-2000:]}"
        )
        assert row.queue == "fj-crash"  # the run keeps its logical queue name

        worker_a = make_worker(queues=("fj-crash",), threads=1, env={"FUSION_JOBS_QUEUE_NAMESPACE": a})
        wait_for(
            lambda: JobRun.objects.get(pk=run_a.run_id).status == "succeeded", what="A's run on A's worker"
        )
        assert marker_pid("ns-a:start") in descendants(worker_a.proc.pid)

        settings.FUSION_JOBS_QUEUE_NAMESPACE = b
        run_b = fusion_jobs.enqueue("t-crashable", label="ns-b", seconds=0)
        wait_for(
            lambda: JobRun.objects.get(pk=run_b.run_id).status == "succeeded", what="B's run on B's worker"
        )
        assert marker_pid("ns-b:start") in descendants(worker_b.proc.pid)
        assert JobRun.objects.get(pk=run_b.run_id).queue == "fj-crash"
        assert "message without a run row" not in worker_a.output() + worker_b.output()
    finally:
        _delete((a, b))
