"""A django-dramatiq project switching to fusion-jobs, end to end on the real RabbitMQ and PostgreSQL.

The project (``tests/djdramatiq_project``) is written as django-dramatiq's README shows: plain
``@dramatiq.actor`` functions in ``shop/tasks.py``, ``DRAMATIQ_BROKER`` and no fusion-jobs
setting. ``settings`` is the project before the switch, ``settings_fusion`` after it (fusion_jobs
added first in INSTALLED_APPS). Everything runs in subprocesses, on a database of its own
(``<FUSION_JOBS_TEST_DB>_djd``) and vhost (``<test vhost>_djd``); one ``rundramatiq`` started with every
django-dramatiq option serves the tests that need a worker. The tests run in file order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import psycopg
import pytest

from tests.conftest import BROKER_URL, wait_for
from tests.support.processes import stop_group

pytestmark = pytest.mark.broker

#: A vhost of its own: plain Dramatiq publishes to un-namespaced queues ("default"), which the
#: session's worker (tests/conftest.py) consumes on the test vhost, rejecting the unknown actors.
_TEST_VHOST = unquote(urlsplit(BROKER_URL).path[1:]) or "fusion-jobs"
VHOST = f"{_TEST_VHOST.strip('/')}_djd"
DJD_BROKER_URL = urlunsplit(urlsplit(BROKER_URL)._replace(path="/" + quote(VHOST, safe="")))
ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "tests" / "djdramatiq_project"
DB = os.environ.get("FUSION_JOBS_TEST_DB", "test_fusion_jobs") + "_djd"
PLAIN = "tests.djdramatiq_project.settings"
FUSION = "tests.djdramatiq_project.settings_fusion"
QUEUES = ("default", "shop-reports")
#: What the tests pass from one to the next (message and run ids).
seen: dict[str, Any] = {}


def _pg(dbname: str = DB) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=os.environ.get("PGHOST", "127.0.0.1"),
        port=os.environ.get("PGPORT", "5432"),
        user=os.environ.get("PGUSER", "postgres"),
        dbname=dbname,
        autocommit=True,
    )


def _env(settings: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FUSION_JOBS_BROKER", "DJANGO_"))}
    return {
        **env,
        "DJANGO_SETTINGS_MODULE": settings,
        "DJD_DB": DB,
        "DJD_BROKER_URL": DJD_BROKER_URL,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def manage(settings: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=_env(settings, **extra),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def py(settings: str, code: str, **extra: str) -> Any:
    """Run ``code`` in a fresh Django process of the project; it sets ``out``, returned as JSON."""
    prelude = "import django, json\ndjango.setup()\nout = None\n"
    done = r"print('\nOUT ' + json.dumps(out, default=str))"
    proc = subprocess.run(
        [sys.executable, "-c", prelude + code + "\n" + done],
        cwd=ROOT,
        env=_env(settings, **extra),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [line for line in proc.stdout.splitlines() if line.startswith("OUT ")][-1]
    return json.loads(line[4:])


def run_row(run_id: str) -> dict[str, Any] | None:
    with _pg() as conn:
        row = conn.execute(
            "SELECT status, attempts, mode, max_retries, execution_timeout, queue, enqueued_by, cron_id, "
            "retry_of_id, kwargs FROM fusion_jobs_jobrun WHERE id = %s",
            (run_id,),
        ).fetchone()
    if row is None:
        return None
    keys = "status attempts mode max_retries execution_timeout queue enqueued_by cron_id retry_of kwargs"
    return dict(zip(keys.split(), row, strict=True))


def finished(run_id: str, what: str = "") -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        row = run_row(run_id)
        return row if row and row["status"] not in ("queued", "running", "retrying") else None

    result: dict[str, Any] = wait_for(done, timeout=60, what=what or f"run {run_id} to finish")
    return result


def notes(key: str) -> int:
    with _pg() as conn:
        return int(conn.execute("SELECT count(*) FROM djd_shop_note WHERE key = %s", (key,)).fetchone()[0])


@pytest.fixture(scope="module")
def project() -> Iterator[None]:
    """The project's own database, migrated with both apps installed, and its own vhost."""
    user = urlsplit(BROKER_URL).username or "guest"
    rabbit("delete_vhost", VHOST, check=False)
    rabbit("add_vhost", VHOST)
    rabbit("set_permissions", "-p", VHOST, user, ".*", ".*", ".*")
    with _pg("postgres") as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}"')
    out = manage(FUSION, "migrate", "-v0")
    assert out.returncode == 0, out.stderr
    yield
    rabbit("delete_vhost", VHOST, check=False)
    with _pg("postgres") as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')


def rabbit(*args: str, check: bool = True) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=check, capture_output=True, text=True, timeout=60)


class Worker:
    """``manage.py rundramatiq`` of the switched project, with every django-dramatiq option."""

    def __init__(self, tmp: Path) -> None:
        self.pid_file, self.log_file, self.fork_mark = tmp / "w.pid", tmp / "w.log", tmp / "fork.pid"
        self.stdout = tmp / "stdout.log"
        self.args = [
            "rundramatiq",
            "--processes", "1",
            "--threads", "2",
            "--path", "tests/djdramatiq_project/extra_path",
            "--queues", *QUEUES,
            "--pid-file", str(self.pid_file),
            "--log-file", str(self.log_file),
            "--skip-logging",
            "--worker-shutdown-timeout", "3000",
            "--fork-function", "djd_extra.mark",
            "--reload",
            "--reload-use-polling",
            "--use-spawn",
        ]  # fmt: skip
        with self.stdout.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "manage.py", *self.args],
                cwd=ROOT,
                env=_env(FUSION, DJD_FORK_MARK=str(self.fork_mark)),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(
            lambda: "Worker process is ready for action" in self.log() or self.proc.poll() is not None,
            timeout=60,
            what="the worker to boot",
        )
        assert self.proc.poll() is None, self.log() + self.stdout.read_text()

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def stop(self) -> None:
        stop_group(self.proc, timeout=90)


@pytest.fixture(scope="module")
def worker(project: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    proc = Worker(tmp_path_factory.mktemp("djd-worker"))
    yield proc
    proc.stop()


def test_plain_django_dramatiq_project_sends_before_the_switch(project: None) -> None:
    out = py(
        PLAIN,
        "from tests.djdramatiq_project.shop.tasks import record\n"
        "from django_dramatiq.models import Task\n"
        "import fusion_jobs  # installed, not in INSTALLED_APPS: nothing changes\n"
        "ids = [record.send('before', 2).message_id, record.send(key='before-kw').message_id]\n"
        "out = {'ids': ids, 'rows': sorted(Task.tasks.filter(id__in=ids).values_list('status', flat=True))}",
    )
    assert out["rows"] == ["enqueued", "enqueued"]  # django-dramatiq's AdminMiddleware wrote them
    seen["before"] = out["ids"]
    with _pg() as conn:
        assert conn.execute("SELECT count(*) FROM fusion_jobs_jobrun").fetchone()[0] == 0


def test_checks_name_the_broker_and_refuse_one_that_is_not_rabbitmq(project: None) -> None:
    out = manage(FUSION, "check")
    assert out.returncode == 0, out.stderr
    assert "fusion_jobs.I020" in out.stderr and "RabbitMQ URL of DRAMATIQ_BROKER" in out.stderr
    assert f"guest:***@127.0.0.1:5672/{VHOST}" in out.stderr
    stub = manage(FUSION, "check", DJD_BROKER_CLASS="dramatiq.brokers.stub.StubBroker")
    assert stub.returncode != 0
    assert "fusion_jobs.E020" in stub.stderr and "fusion-jobs runs on RabbitMQ only" in stub.stderr
    explicit = manage(FUSION, "check", DJD_FUSION_BROKER_URL=DJD_BROKER_URL)
    assert explicit.returncode == 0 and "I020" not in explicit.stderr


def test_worker_runs_actors_sent_before_and_after_the_switch(worker: Worker) -> None:
    for run_id in seen["before"]:  # recorded by the worker: no run row was written at send
        row = finished(run_id, "a message sent before the switch")
        assert row["status"] == "succeeded"
        assert row["enqueued_by"] == "message without a run row"
    assert notes("before") == 1 and notes("before-kw") == 1
    out = py(
        FUSION,
        "import fusion_jobs\n"
        "from fusion_jobs.models import JobRun\n"
        "from fusion_jobs.exceptions import TaskArgumentsError\n"
        "from tests.djdramatiq_project.shop.tasks import record, flaky, slow, report\n"
        "after = record.send('after', 3).message_id\n"
        "out = {'after': after, 'row_at_send': JobRun.objects.get(pk=after).status}\n"
        "out['flaky'] = flaky.send('fail-1').message_id\n"
        "out['slow'] = slow.send_with_options(args=(5,), time_limit=10**9, max_retries=7).message_id\n"
        "out['report'] = report.send('q').message_id\n"
        "out['enqueue'] = fusion_jobs.enqueue('record', key='via-enqueue').run_id\n"
        "try:\n"
        "    fusion_jobs.enqueue('record', bogus=1)\n"
        "except TaskArgumentsError as exc:\n"
        "    out['refused'] = str(exc)\n",
    )
    assert out["row_at_send"] in ("queued", "running", "succeeded")  # there at once: written by send()
    after = finished(out["after"])
    assert after["status"] == "succeeded" and notes("after") == 1
    assert after["enqueued_by"] == "__main__:<module>"  # the sender, not "message without a run row"
    assert finished(out["enqueue"])["status"] == "succeeded" and notes("via-enqueue") == 1
    flaky = finished(out["flaky"])
    assert (flaky["status"], flaky["attempts"], flaky["max_retries"]) == ("failed", 2, 1)  # max_retries=1
    slow = finished(out["slow"])  # time_limit=1000 ms; the per-message options lengthened nothing
    assert (slow["status"], slow["max_retries"], slow["execution_timeout"]) == ("timed_out", 0, 1.0)
    report = finished(out["report"])
    assert (report["status"], report["queue"]) == ("succeeded", "shop-reports")
    assert "unexpected argument 'bogus'" in out["refused"]
    seen["failed"] = out["flaky"]


def test_admin_retries_and_cancels_actor_runs(worker: Worker) -> None:
    out = py(
        FUSION,
        "from django.contrib.auth.models import User\n"
        "from django.test import Client\n"
        "from django.urls import reverse\n"
        "from fusion_jobs.models import JobRun\n"
        "from tests.djdramatiq_project.shop.tasks import record\n"
        "user = User.objects.create_superuser('admin', 'a@example.com', 'pw')\n"
        "client = Client()\n"
        "client.force_login(user)\n"
        f"failed = {seen['failed']!r}\n"
        "page = client.get(reverse('admin:fusion_jobs_jobrun_change', args=[failed]))\n"
        "client.post(reverse('admin:fusion_jobs_jobrun_retry', args=[failed]))\n"
        "retry = JobRun.objects.get(retry_of_id=failed)\n"
        "late = record.send_with_options(args=('late',), delay=600_000).message_id\n"
        "client.post(reverse('admin:fusion_jobs_jobrun_cancel', args=[late]))\n"
        "out = {'page': page.status_code, 'retry': str(retry.pk), 'late': JobRun.objects.get(pk=late).status}",
    )
    assert out["page"] == 200
    assert out["late"] == "cancelled"
    row = finished(out["retry"], "the admin's retry")
    assert row["retry_of"] is not None and row["status"] == "failed" and row["attempts"] == 2
    assert notes("fail-1") == 4  # two attempts of the run, two of its retry, all on the worker


def test_cron_on_an_actor(worker: Worker) -> None:
    out = py(
        FUSION,
        "from fusion_jobs import ensure_cron\n"
        "from fusion_jobs.scheduler.firing import run_now\n"
        "schedule = ensure_cron('record', 'djd-record', '*/5 * * * *', {'key': 'cron', 'value': 7})\n"
        "out = str(run_now(schedule, requested_by='test').pk)",
    )
    row = finished(out, "the cron's run")
    assert row["status"] == "succeeded" and row["cron_id"] is not None
    assert notes("cron") == 1


def test_sending_without_a_broker_runs_inline(project: None) -> None:
    out = py(
        FUSION,
        "from fusion_jobs.models import JobRun\n"
        "from tests.djdramatiq_project.shop.tasks import record\n"
        "run = JobRun.objects.get(pk=record.send('inline', 5).message_id)\n"
        "out = [run.mode, run.status]",
        DJD_FUSION_BROKER_URL="",
    )
    assert out == ["inline", "succeeded"]
    assert notes("inline") == 1


def test_import_copies_django_dramatiq_task_rows_once(worker: Worker) -> None:
    statuses = ["done", "failed", "delayed", "running", "skipped", "enqueued"]
    made = py(
        FUSION,
        "import uuid, dramatiq\n"
        "from django_dramatiq.models import Task\n"
        "ids = {}\n"
        f"for status in {statuses!r}:\n"
        "    options = {'retries': 1, 'traceback': 'Traceback...\\nValueError: boom'} if status == 'failed' else {}\n"
        "    m = dramatiq.Message(queue_name='default', actor_name='record', args=('imp-' + status, 4), kwargs={},\n"
        "                         options=options, message_id=str(uuid.uuid4()))\n"
        "    Task.tasks.create_or_update_from_message(m, status=status, actor_name='record', queue_name='default')\n"
        "    ids[status] = m.message_id\n"
        "out = ids",
    )
    first = manage(FUSION, "importdramatiqtasks", "--batch-size", "2")
    assert first.returncode == 0, first.stderr
    total = len(statuses) + len(seen["before"])
    assert f"2/{total} read" in first.stdout and f"{total}/{total} read" in first.stdout
    assert f"done: {len(statuses)} run(s) imported, {len(seen['before'])} already present" in first.stdout
    expected = {
        "done": "succeeded",
        "failed": "failed",
        "delayed": "queued",
        "running": "running",
        "skipped": "skipped",
        "enqueued": "queued",
    }
    for status, run_id in made.items():
        row = run_row(run_id)
        assert row is not None and row["status"] == expected[status], status
        assert row["kwargs"] == {"key": f"imp-{status}", "value": 4}  # positional args as keywords
        assert row["enqueued_by"] == "django-dramatiq (imported)"
    assert run_row(made["failed"])["attempts"] == 2  # type: ignore[index]
    for run_id in seen["before"]:  # already recorded by the worker: left as they were
        assert run_row(run_id)["enqueued_by"] == "message without a run row"  # type: ignore[index]
    again = manage(FUSION, "importdramatiqtasks")
    assert f"done: 0 run(s) imported, {total} already present" in again.stdout


def test_rundramatiq_takes_django_dramatiqs_options(worker: Worker) -> None:
    startup = worker.log()
    # --processes/--threads/--queues reach the supervisor; --log-file holds its and the processes' output
    assert "processes=1 threads=2" in startup and "queues=default,shop-reports" in startup
    assert "Worker process is ready for action" not in worker.stdout.read_text()
    # --skip-logging: the worker processes log through the project's LOGGING only
    assert "DJDLOG fusion_jobs.worker Worker process is ready for action" in startup
    # --pid-file: the supervisor's pid
    assert int(worker.pid_file.read_text()) == worker.proc.pid
    # --fork-function from a module only --path makes importable, in a process of its own
    fork_pid = int(wait_for(lambda: worker.fork_mark.exists() and worker.fork_mark.read_text(), what="fork"))
    assert "fusion_jobs.fork_function" in Path(f"/proc/{fork_pid}/cmdline").read_text()
    # --reload: a changed source file replaces the worker process
    os.utime(HERE / "shop" / "tasks.py")
    wait_for(
        lambda: "tasks.py changed: reloading" in worker.log(), what="the supervisor to notice the change"
    )
    wait_for(lambda: worker.log().count("Worker process is ready for action") >= 2, what="the new process")
    # --worker-shutdown-timeout 3000: a stop waits 3 s for a running task, not Dramatiq's 10 minutes
    linger = py(
        FUSION, "from tests.djdramatiq_project.shop.tasks import linger\nout = linger.send(300).message_id"
    )
    wait_for(lambda: (run_row(linger) or {}).get("status") == "running", what="the long task to start")
    started = time.monotonic()
    worker.stop()
    assert time.monotonic() - started < 60, "the stop waited for the running task"
    assert worker.proc.returncode == 0
    assert not worker.pid_file.exists()  # removed at exit
    assert not Path(f"/proc/{fork_pid}").exists() or "zombie" in Path(f"/proc/{fork_pid}/status").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--use-gevent",), "--use-gevent is not supported"),
        (("--processes", "0"), "argument --processes: 0 is not at least 1"),
        (("--worker-shutdown-timeout", "-1"), "argument --worker-shutdown-timeout: -1 is below 0"),
    ],
)
def test_rundramatiq_refuses_what_does_not_apply(project: None, args: tuple[str, ...], message: str) -> None:
    out = manage(FUSION, "rundramatiq", *args)
    assert out.returncode != 0
    assert message in out.stderr
