"""The loopback services every peer shares: RabbitMQ vhost ``fj_perf`` and one PostgreSQL server.

Each peer that keeps history gets its own database on that server (``Peer.database``), created and
migrated here with ``bench.settings``; a child process works on it as its ``default`` alias
(``FJ_BENCH_DB_NAME``), as a real deployment would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pika
import psycopg
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent.parent
VHOST = "fj_perf"
BROKER_URL = f"amqp://guest:guest@127.0.0.1:5672/{VHOST}"
#: The database of fusion-jobs (and of the harness itself); ``bench/profile_fj.py`` uses it too.
DB = "fj_bench"
PROCESSES, THREADS = 2, 8
THREADED = f"{PROCESSES} processes × {THREADS} threads"  # noqa: RUF001  (the multiplication sign is meant)

_deadline = float("inf")


class BenchError(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"[compare {time.strftime('%H:%M:%S')}] {message}", flush=True)


def set_deadline(at: float) -> None:
    """Stop (``BenchError``) at this ``time.time()``: ``--max-minutes``, shared with the child processes."""
    global _deadline
    _deadline = at


def check_deadline(what: str) -> None:
    if time.time() > _deadline:
        raise BenchError(f"--max-minutes reached during {what}; stopping")


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        check_deadline(what)
        time.sleep(interval)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def child_env(db: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of every child (peer runner, worker, migrate): bench settings on ``db``."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "FJ_BENCH_BROKER_URL": BROKER_URL,
        "FUSION_JOBS_BROKER_URL": BROKER_URL,
        "FJ_BENCH_DB_NAME": db or DB,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("FJ_BENCH_DB", None)
    env.update(extra)
    return env


# --- RabbitMQ --------------------------------------------------------------------------------------


def amqp() -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.URLParameters(BROKER_URL))


def queue_depth(name: str) -> int:
    connection = amqp()
    try:
        try:
            return int(connection.channel().queue_declare(queue=name, passive=True).method.message_count)
        except pika.exceptions.ChannelClosedByBroker:
            return 0
    finally:
        connection.close()


def purge(names: Iterable[str], *, delete: bool = False) -> None:
    """Empty (or delete) these queues and Dramatiq's delay and dead-letter queues beside them."""
    connection = amqp()
    try:
        channel = connection.channel()
        for queue in names:
            for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
                try:
                    if delete:
                        channel.queue_delete(name)
                    else:
                        channel.queue_purge(name)
                except pika.exceptions.ChannelClosedByBroker:  # not declared
                    channel = connection.channel()
    finally:
        connection.close()


def ensure_vhost() -> None:
    """Create the benchmark's RabbitMQ vhost (for guest) when it is missing: a fresh machine has only ``/``."""
    try:
        amqp().close()
        return
    except (pika.exceptions.ProbableAccessDeniedError, pika.exceptions.ConnectionClosedByBroker):
        pass
    log(f"creating RabbitMQ vhost {VHOST} (rabbitmqctl add_vhost, permissions for guest)")
    try:
        for argv in (["add_vhost", VHOST], ["set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*"]):
            subprocess.run(["rabbitmqctl", *argv], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BenchError(
            f"RabbitMQ vhost {VHOST!r} is missing and could not be created with rabbitmqctl ({exc}); "
            f"create it: rabbitmqctl add_vhost {VHOST} && "
            f"rabbitmqctl set_permissions -p {VHOST} guest '.*' '.*' '.*'"
        ) from exc


def rabbitmq_version() -> str:
    connection = amqp()
    try:
        value = connection._impl.server_properties.get("version", "")
        return value.decode() if isinstance(value, bytes) else str(value)
    finally:
        connection.close()


# --- PostgreSQL ------------------------------------------------------------------------------------


def prepare_databases(names: Iterable[str]) -> None:
    """Create each database when missing and migrate it (every bench app, so one settings file serves all)."""
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
        for name in names:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                log(f"creating database {name}")
                conn.execute(f"CREATE DATABASE {name}")
    for name in names:
        log(f"migrating {name} (manage.py migrate, DJANGO_SETTINGS_MODULE=bench.settings)")
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"],
            cwd=ROOT,
            env=child_env(name),
            check=True,
            timeout=600,
        )


def sql(query: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """A query on Django's ``default`` database (the peer's own, in a peer's child process)."""
    with connection.cursor() as cursor:
        cursor.execute(query, params or [])
        return list(cursor.fetchall()) if cursor.description else []


def truncate(*tables: str) -> None:
    sql(f"TRUNCATE {', '.join(tables)} CASCADE")


def write_transactions() -> int:
    """Write transactions so far, cluster-wide: the next transaction id to be assigned.

    Each transaction that writes takes one id when it starts writing, so the difference over a
    drain counts commits exactly and at once (``pg_stat_database`` lags). Nothing else should write
    to this cluster during a benchmark run.
    """
    return int(sql("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")[0][0])


def server_settings() -> dict[str, str]:
    return {
        "postgresql": sql("SHOW server_version")[0][0],
        "synchronous_commit": sql("SHOW synchronous_commit")[0][0],
    }
