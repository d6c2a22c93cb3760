"""A broker URL with a sentinel password: the password appears in no log, page, error, output or row."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.core import checks
from django.db import connection

import fusion_jobs
from fusion_jobs.backends.broker import reset_broker
from fusion_jobs.models import JobRun
from tests.conftest import IN_CI, ROOT, WorkerProcess, wait_for
from tests.support.processes import environment

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]

SENTINEL = "Sentinel-Pw-7f3a9c"
USER = "fj_sentinel"
VHOST = "fj_sentinel"
URL = f"amqp://{USER}:{SENTINEL}@127.0.0.1:5672/{VHOST}"


@pytest.fixture(scope="module")
def sentinel_user():
    """A RabbitMQ user whose password is the sentinel (created with rabbitmqctl, as root)."""
    if not shutil.which("rabbitmqctl") or os.geteuid() != 0:
        if IN_CI:
            pytest.fail("the secrets test needs rabbitmqctl as root to create its user")
        pytest.skip("needs rabbitmqctl as root")
    run = lambda *args: subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, check=False)  # noqa: E731
    run("add_vhost", VHOST)
    run("add_user", USER, SENTINEL)
    run("change_password", USER, SENTINEL)
    run("set_permissions", "-p", VHOST, USER, ".*", ".*", ".*")
    return URL


def test_password_never_shown(settings, sentinel_user, test_db_name, client, admin_user, caplog):
    caplog.set_level(logging.DEBUG)
    settings.FUSION_JOBS_BROKER_URL = URL
    reset_broker()
    seen: list[str] = []
    try:
        # A real worker with this URL: its start-up line and logs.
        proc = WorkerProcess(
            test_db_name, queues=("default",), env={"FUSION_JOBS_WORKER_BROKER_URL": URL}
        ).start()
        try:
            handle = fusion_jobs.enqueue("t-record", label="secret-run")
            wait_for(lambda: JobRun.objects.filter(pk=handle.run_id, status="succeeded").exists())
            failing = fusion_jobs.enqueue("t-always-fail", label="secret-fail")
            wait_for(lambda: JobRun.objects.filter(pk=failing.run_id, status="failed").exists(), timeout=30)
        finally:
            proc.stop()
        seen.append(proc.output())
        assert "fusion-jobs worker: broker=amqp://fj_sentinel:***@127.0.0.1:5672/fj_sentinel" in proc.output()

        # Status, pages and the admin.
        seen.append(repr(fusion_jobs.get_jobs_status()))
        seen.append(client.get("/").content.decode())
        client.force_login(admin_user)
        for url in ("/admin/fusion_jobs/jobrun/", f"/admin/fusion_jobs/jobrun/{failing.run_id}/change/"):
            response = client.get(url)
            assert response.status_code == 200
            seen.append(response.content.decode())

        # Errors: a failed publish (nothing listens on port 1) and a malformed-URL check.
        settings.FUSION_JOBS_BROKER_URL = f"amqp://{USER}:{SENTINEL}@127.0.0.1:1/{VHOST}"
        settings.FUSION_JOBS_ON_PUBLISH_ERROR = "raise"
        reset_broker()
        with pytest.raises(fusion_jobs.PublishError) as info:
            fusion_jobs.enqueue("t-record", label="unpublishable")
        seen.append(str(info.value))
        settings.FUSION_JOBS_BROKER_URL = f"http://{USER}:{SENTINEL}@127.0.0.1:5672/"
        seen.extend(str(m) for m in checks.run_checks(tags=["fusion_jobs"]))
    finally:
        reset_broker()

    # Command output.
    env = environment(
        DJANGO_SETTINGS_MODULE="tests.settings", FUSION_JOBS_WORKER_BROKER_URL=f"redis://u:{SENTINEL}@x/"
    )
    out = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=Path(ROOT),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seen.append(out.stdout + out.stderr)
    assert "fusion_jobs.E001" in out.stdout + out.stderr

    # Logs of this process, and every text column of every run.
    seen.append(caplog.text)
    with connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(r)::text FROM fusion_jobs_jobrun r")
        rows = [row[0] for row in cursor.fetchall()]
    assert len(rows) >= 3
    seen.extend(rows)

    leaks = [
        text[max(0, text.find(SENTINEL) - 80) : text.find(SENTINEL) + 40] for text in seen if SENTINEL in text
    ]
    assert leaks == []
