"""Messages that arrive while the worker's database is unreachable: none runs without its run row,
none is dead-lettered, and each runs once when the database is back.

The worker reaches PostgreSQL through a TCP forwarder the test cuts and restores, so the shared
PostgreSQL is never stopped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from fusion_jobs.models import JobRun
from tests.conftest import WorkerProcess, purge_queues, wait_for
from tests.settings import DATABASES
from tests.support.proxy import Proxy
from tests.system.faults.hostile import QUEUE, message, message_count, publish
from tests.testapp.models import Marker

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def forwarder() -> Iterator[Proxy]:
    db = DATABASES["default"]
    fwd = Proxy((db["HOST"], int(db["PORT"])))
    yield fwd
    fwd.close()


def test_messages_during_a_database_outage_wait_and_run_once_after(make_worker, broker_settings, forwarder):
    purge_queues(queues=(QUEUE,))
    worker: WorkerProcess = make_worker(
        queues=(QUEUE,), processes=1, threads=4, env={"PGPORT": str(forwarder.port)}
    )
    warm = message("t-hostile-record", {"label": "db-warm"})
    publish(warm)
    wait_for(
        lambda: JobRun.objects.filter(pk=warm["message_id"], status="succeeded").exists(), what="warm-up run"
    )

    forwarder.cut()
    now = message("t-hostile-record", {"label": "db-now"})
    later = message(
        "t-hostile-record",
        {"label": "db-later"},
        queue_name=f"{QUEUE}.DQ",
        options={"eta": int((time.time() + 3) * 1000)},
    )
    publish(now)
    publish(later, queue=f"{QUEUE}.DQ")
    time.sleep(12)
    output = worker.output()
    assert "database unavailable" in output, output[-3000:]  # the outage was real
    assert "Failed to process message t-hostile-record" not in output, output[-3000:]
    assert message_count(f"{QUEUE}.XQ") == 0
    assert not JobRun.objects.filter(pk__in=[now["message_id"], later["message_id"]]).exists()

    forwarder.restore()
    for body in (now, later):
        wait_for(
            lambda body=body: JobRun.objects.filter(pk=body["message_id"], status="succeeded").exists(),
            timeout=60,
            what=f"{body['kwargs']['label']} to run once the database is back",
        )
    assert Marker.objects.filter(label="db-now:start").count() == 1
    assert Marker.objects.filter(label="db-later:start").count() == 1
    assert message_count(f"{QUEUE}.XQ") == 0
