"""Shared fixtures: the real services, a real ``rundramatiq`` subprocess, and waiting helpers.

Broker tests talk to RabbitMQ and PostgreSQL on loopback. Under ``CI=true`` a missing service
fails the run; elsewhere those tests are skipped with the reason.

Two settings, two runs: the library's tests on ``tests.settings`` (no example app loaded) and
``tests/example`` on the example's (``pytest --ds=tests.example.settings tests/example``); each
run leaves the other's tests out, and naming the other's tests is an error.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.processes import kill_group, stop_group

ROOT = Path(__file__).resolve().parent.parent
BROKER_URL = os.environ.get("FUSION_JOBS_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TEST_QUEUES = ("default", "fj-crash")
#: Supervisor pids of the session's worker (``worker``): its processes heartbeat into the test
#: database too, and tests of the workers registry leave its rows out. (``tests`` is a package, so
#: test modules importing ``tests.conftest`` share this module with pytest.)
SESSION_WORKER_PIDS: set[int] = set()


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _broker_address() -> tuple[str, int]:
    parts = urlsplit(BROKER_URL)
    return parts.hostname or "127.0.0.1", parts.port or 5672


def rabbitmq_available() -> bool:
    return _port_open(*_broker_address())


EXAMPLE_TESTS = Path(__file__).resolve().parent / "example"
EXAMPLE_SETTINGS = "tests.example.settings"


def _example_run() -> bool:
    """pytest-django has put the settings module of this run (``--ds``, the ini) in the environment."""
    return os.environ.get("DJANGO_SETTINGS_MODULE") == EXAMPLE_SETTINGS


def _in_example(path: Path) -> bool:
    return path == EXAMPLE_TESTS or EXAMPLE_TESTS in path.parents


def pytest_configure(config: pytest.Config) -> None:
    example_run = _example_run()
    for arg in config.args:
        path = Path(arg.split("::")[0]).resolve()
        if path.exists() and path not in EXAMPLE_TESTS.parents and _in_example(path) != example_run:
            raise pytest.UsageError(
                f"{arg}: tests/example runs on the example's settings and nothing else does: "
                "pytest --ds=tests.example.settings tests/example (and the rest without --ds)."
            )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    path = collection_path.resolve()
    if path in EXAMPLE_TESTS.parents:
        return None
    return True if _in_example(path) != _example_run() else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    broker_items = [item for item in items if "broker" in item.keywords]
    if not broker_items or rabbitmq_available():
        return
    host, port = _broker_address()
    where = f"{host}:{port}"
    if IN_CI:
        raise pytest.UsageError(f"RabbitMQ is not reachable on {where} and CI=true: start it (.ci/run does).")
    skip = pytest.mark.skip(reason=f"RabbitMQ not reachable on {where}")
    for item in broker_items:
        item.add_marker(skip)


def wait_for(
    predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what or predicate!r} (last value: {last!r})")


def purge_queues(
    url: str = BROKER_URL, queues: tuple[str, ...] = TEST_QUEUES, namespace: str | None = None
) -> None:
    """Empty the logical ``queues`` (and their .DQ/.XQ) as RabbitMQ names them in ``namespace``
    (default: the current ``FUSION_JOBS_QUEUE_NAMESPACE``)."""
    import pika

    from fusion_jobs.conf import broker_queue

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for logical in queues:
            if namespace is None:
                queue = broker_queue(logical)
            else:
                queue = f"{namespace}.{logical}" if namespace else logical
            for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
                try:
                    channel.queue_purge(name)
                except pika.exceptions.ChannelClosedByBroker:  # not declared yet
                    channel = connection.channel()
    finally:
        connection.close()


class WorkerProcess:
    """A real ``manage.py rundramatiq`` against the test database, with its output kept for asserts."""

    def __init__(
        self,
        db_name: str,
        *,
        processes: int = 1,
        threads: int = 4,
        queues: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ):
        self.db_name = db_name
        self.queues = queues
        self.processes = processes
        self.threads = threads
        self.extra_env = env or {}
        self.log_path = Path(f"/tmp/fusion-jobs-test-worker-{os.getpid()}-{time.monotonic_ns()}.log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        env = {
            **os.environ,
            # The settings of this run: the library's, or the example's for tests/example.
            "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "tests.settings"),
            "FUSION_JOBS_TEST_DB": self.db_name,
            "FUSION_JOBS_WORKER_BROKER_URL": BROKER_URL,
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "rundramatiq",
                "-p",
                str(self.processes),
                "-t",
                str(self.threads),
                *(["--queues", *self.queues] if self.queues else []),
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for(
                lambda: (
                    self.output().count("Worker process is ready for action") >= self.processes
                    or self.proc.poll() is not None
                ),  # type: ignore[union-attr]
                timeout=30,
                what="the worker to boot",
            )
        except BaseException:  # a worker that never became ready must not outlive the test
            self.stop()
            raise
        if self.proc.poll() is not None:
            pytest.fail(f"worker exited with {self.proc.returncode}:\n{self.output()}")
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def child_pids(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)],
            capture_output=True,
            text=True,
            check=False,  # type: ignore[union-attr]
        ).stdout
        return [int(p) for p in out.split()]

    def kill(self) -> None:
        """SIGKILL the whole process group: master and worker processes die mid-run."""
        if self.proc:
            kill_group(self.proc)

    def stop(self) -> None:
        if self.proc:
            stop_group(self.proc)
        self.log.close()


@pytest.fixture
def broker_settings(settings: Any) -> Iterator[str]:
    """Turn jobs on for this test (publishing from the test process to the real RabbitMQ)."""
    from fusion_jobs.backends.broker import reset_broker

    settings.FUSION_JOBS_BROKER_URL = BROKER_URL
    reset_broker()
    yield BROKER_URL
    reset_broker()


@pytest.fixture(scope="session")
def test_db_name(django_db_setup: Any, django_db_blocker: Any) -> str:
    from django.db import connection

    with django_db_blocker.unblock():
        return str(connection.settings_dict["NAME"])


@pytest.fixture(scope="session")
def worker(test_db_name: str) -> Iterator[WorkerProcess]:
    """One real worker for the session on queue "default" (tests using it need ``transactional_db``).

    Queue "fj-crash" is left to workers a test starts (and may kill) with ``make_worker``.
    """
    if not rabbitmq_available():
        pytest.skip("RabbitMQ not reachable")
    purge_queues()
    proc = WorkerProcess(test_db_name, queues=("default",)).start()
    SESSION_WORKER_PIDS.add(proc.proc.pid)  # type: ignore[union-attr]
    yield proc
    proc.stop()


@pytest.fixture
def make_worker(test_db_name: str) -> Iterator[Callable[..., WorkerProcess]]:
    """Start extra workers a test may kill; all are stopped at the end."""
    started: list[WorkerProcess] = []

    def make(**kwargs: Any) -> WorkerProcess:
        proc = WorkerProcess(test_db_name, **kwargs).start()
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()
