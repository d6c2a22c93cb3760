"""Single-flight locks through PgBouncer in transaction pooling mode.

Before: the lock was a session advisory lock (``pg_try_advisory_lock``) taken in one autocommit
statement. PgBouncer hands the server connection back to its pool after that statement, so the
next client to get it re-entered the same session's lock (a second run of the task started while
the first still ran), and the unlock, landing on another server connection, left the lock behind.
Now it is a transaction-scoped lock in a transaction held open for the run: PgBouncer keeps the
server connection for the whole transaction.

Uses the PgBouncer of ``scripts/test.sh`` (``FUSION_JOBS_TEST_PGBOUNCER_PORT``), or starts its own.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import psycopg
import pytest
from django.db import connections

from fusion_jobs import admission
from fusion_jobs.registry import get_task
from tests.conftest import IN_CI, ROOT
from tests.support.processes import free_port


@pytest.fixture(scope="module")
def pgbouncer_port() -> Iterator[int]:
    shared = os.environ.get("FUSION_JOBS_TEST_PGBOUNCER_PORT")
    if shared:
        yield int(shared)
        return
    installed = Path("/usr/sbin/pgbouncer").exists() or os.access("/usr/bin/pgbouncer", os.X_OK)
    if not installed and not IN_CI:
        pytest.skip("pgbouncer is not installed (scripts/pgbouncer.sh installs it)")
    # Under CI, scripts/pgbouncer.sh installs it; a failed install fails the test, never a skip.
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="fj-pgbouncer-") as directory:
        subprocess.run([ROOT / "scripts/pgbouncer.sh", "start", directory, str(port), "4"], check=True)
        try:
            yield port
        finally:
            subprocess.run([ROOT / "scripts/pgbouncer.sh", "stop", directory], check=False)


@pytest.fixture
def through_pgbouncer(pgbouncer_port: int, transactional_db: Any) -> Iterator[dict[str, Any]]:
    """New connections of the test database go through PgBouncer (the open one stays direct).

    The single-flight lock takes a new connection per run (``connections.create_connection``),
    so it goes through PgBouncer; yields the direct connection's parameters.
    """
    settings_dict = connections.settings["default"]
    direct = {
        "dbname": settings_dict["NAME"],
        "user": settings_dict["USER"],
        "host": settings_dict["HOST"],
        "port": settings_dict["PORT"],
    }
    connections["default"].ensure_connection()
    with mock.patch.dict(settings_dict, {"PORT": str(pgbouncer_port)}):
        yield direct


def _direct_lock_free(direct: dict[str, Any], number: int) -> bool:
    """Whether a session straight to PostgreSQL can take the advisory lock (then gives it back)."""
    with psycopg.connect(**direct, autocommit=True) as conn:
        (free,) = conn.execute("SELECT pg_try_advisory_lock(%s)", [number]).fetchone()  # type: ignore[misc]
        if free:
            conn.execute("SELECT pg_advisory_unlock(%s)", [number])
        return bool(free)


def test_single_flight_lock_is_exclusive_and_released_through_transaction_pooling(through_pgbouncer):
    task_obj = get_task("t-cron-single-flight")
    key = admission.flight_key(task_obj, {})
    number = admission.lock_id(key)
    first = admission.acquire(task_obj, key, holder="run-1")
    assert first is not None
    try:
        # Another worker asks while the first run holds it: refused (before: granted on the
        # pooled server connection that still carried the first client's session lock).
        assert admission.acquire(task_obj, key, holder="run-2") is None
        assert not _direct_lock_free(through_pgbouncer, number)
    finally:
        first()
    assert _direct_lock_free(through_pgbouncer, number), (
        "the lock outlived its release (left on a pooled server connection)"
    )
    again = admission.acquire(task_obj, key, holder="run-3")
    assert again is not None
    again()
