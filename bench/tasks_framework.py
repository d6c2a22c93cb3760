"""Django's Tasks framework on fusion-jobs: the framework layer's cost, and django-tasks-db beside it.

    .venv/bin/python bench/tasks_framework.py [--n 2000] [--reps 3] [--write-docs]

Three ways to run the same empty task (``bench/dtapp/tasks.py``), on this machine's loopback
RabbitMQ (vhost ``fj_dt_bench``, created and deleted here) and PostgreSQL (database
``fj_dt_bench``, created and migrated here):

* ``fusion_jobs.enqueue()`` of a fusion-jobs task;
* ``Task.enqueue()`` of a ``@django.tasks.task`` through ``FusionJobsBackend``;
* ``Task.enqueue()`` through django-tasks-db's ``DatabaseBackend``, run by its ``db_worker``.

Per repetition and way: **enqueue**, N calls from one thread outside a transaction (fusion-jobs:
row + publish with confirms; django-tasks-db: one row), rate = N / elapsed; then **drain**: the
workers start on the N queued runs (fusion-jobs ``rundramatiq -p 2 -t 8``; django-tasks-db two
``db_worker --batch`` processes, one per core, as it runs one task at a time per process),
rate = N / (last finish - first start) from the run rows, so worker boot is excluded. Figures are
medians over the repetitions; the ways run in rotating order.
"""

# ruff: noqa: RUF001
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DB = "fj_dt_bench"
VHOST = "fj_dt_bench"
BROKER_URL = f"amqp://guest:guest@127.0.0.1:5672/{VHOST}"
QUEUE = "bench_dt"
WAYS = ("fusion_jobs.enqueue", "django Task via FusionJobsBackend", "django Task via django-tasks-db")
RESULTS = ROOT / "bench" / "results" / "django_tasks.json"
DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- django-tasks bench: begin -->", "<!-- django-tasks bench: end -->"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def child_env() -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.django_tasks_settings",
        "FJ_BENCH_DB_NAME": DB,
        "FJ_BENCH_BROKER_URL": BROKER_URL,
        "FUSION_JOBS_BROKER_URL": BROKER_URL,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("FJ_BENCH_DB", None)
    return env


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


def prepare() -> None:
    import psycopg

    rabbitmqctl("add_vhost", VHOST)
    rabbitmqctl("set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB]).fetchone():
            conn.execute(f"CREATE DATABASE {DB}")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=child_env(), check=True, timeout=300
    )
    os.environ.update(child_env())
    import django

    django.setup()


def clean() -> None:
    import pika
    from django_tasks_db.models import DBTaskResult

    from fusion_jobs.models import JobRun

    JobRun.objects.all().delete()
    DBTaskResult.objects.all().delete()
    connection = pika.BlockingConnection(pika.URLParameters(BROKER_URL))
    try:
        channel = connection.channel()
        for name in (QUEUE, f"{QUEUE}.DQ", f"{QUEUE}.XQ"):
            try:
                channel.queue_purge(name)
            except pika.exceptions.ChannelClosedByBroker:
                channel = connection.channel()
    finally:
        connection.close()


def enqueue_all(way: str, n: int) -> float:
    import fusion_jobs
    from bench.dtapp import tasks

    started = time.perf_counter()
    if way == WAYS[0]:
        for i in range(n):
            fusion_jobs.enqueue(tasks.fj_plain, n=i)
    elif way == WAYS[1]:
        for i in range(n):
            tasks.fj_django.enqueue(n=i)
    else:
        for i in range(n):
            tasks.db_django.enqueue(n=i)
    return n / (time.perf_counter() - started)


def run_workers(way: str, n: int, timeout: float) -> float:
    from django.db.models import Max, Min
    from django_tasks_db.models import DBTaskResult

    from fusion_jobs.models import JobRun

    if way == WAYS[2]:
        argvs = [
            [sys.executable, "manage.py", "db_worker", "--backend", "db", "--batch", "--no-startup-delay"]
            for _ in range(2)
        ]
        rows: Any = DBTaskResult.objects.all()
        done = lambda: rows.filter(status__in=["SUCCESSFUL", "FAILED"]).count()  # noqa: E731
    else:
        argvs = [[sys.executable, "manage.py", "rundramatiq", "-p", "2", "-t", "8", "--queues", QUEUE]]
        rows = JobRun.objects.all()
        done = lambda: rows.filter(status__in=["succeeded", "failed"]).count()  # noqa: E731
    procs = [
        subprocess.Popen(
            argv,
            cwd=ROOT,
            env=child_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for argv in argvs
    ]
    try:
        deadline = time.monotonic() + timeout
        while done() < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"{way}: {done()} of {n} runs finished in {timeout:.0f} s")
            time.sleep(0.2)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(60)
    span = rows.aggregate(first=Min("started_at"), last=Max("finished_at"))
    return n / (span["last"] - span["first"]).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    prepare()
    figures: dict[str, dict[str, list[float]]] = {way: {"enqueue": [], "drain": []} for way in WAYS}
    try:
        for rep in range(args.reps):
            order = WAYS[rep % 3 :] + WAYS[: rep % 3]
            for way in order:
                clean()
                enqueue_rate = enqueue_all(way, args.n)
                drain_rate = run_workers(way, args.n, timeout=max(120.0, args.n / 20))
                figures[way]["enqueue"].append(enqueue_rate)
                figures[way]["drain"].append(drain_rate)
                log(f"rep {rep + 1}: {way}: enqueue {enqueue_rate:,.0f}/s, drain {drain_rate:,.0f}/s")
    finally:
        try:
            clean()
        finally:
            rabbitmqctl("delete_vhost", VHOST)
    medians = {way: {k: statistics.median(v) for k, v in f.items()} for way, f in figures.items()}
    RESULTS.write_text(
        json.dumps(
            {
                "n": args.n,
                "reps": args.reps,
                "figures": figures,
                "medians": medians,
                "at": datetime.now(UTC).isoformat(),
            },
            indent=2,
        )
    )
    table = render(medians, args)
    print(table)
    if args.write_docs:
        text = DOCS.read_text()
        section = f"{BEGIN}\n{table}\n{END}"
        if BEGIN in text:
            text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) :]
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
        DOCS.write_text(text)


def render(medians: dict[str, dict[str, float]], args: argparse.Namespace) -> str:
    base = medians[WAYS[0]]
    lines = [
        "## Django's Tasks framework: `Task.enqueue()` on fusion-jobs, and django-tasks-db",
        "",
        f"`bench/tasks_framework.py --n {args.n} --reps {args.reps}`, {platform.node()} ({os.cpu_count()} cores), "
        f"{datetime.now(UTC):%Y-%m-%d}; medians of {args.reps} repetitions. Enqueue: one thread, outside a "
        "transaction. Drain: fusion-jobs `rundramatiq -p 2 -t 8`, django-tasks-db two `db_worker --batch` "
        "processes (it runs one task at a time per process); worker boot excluded.",
        "",
        "| way | enqueue /s | × fusion_jobs.enqueue | drain /s | × fusion_jobs.enqueue |",
        "|---|---:|---:|---:|---:|",
    ]
    for way in WAYS:
        m = medians[way]
        lines.append(
            f"| {way} | {m['enqueue']:,.0f} | {m['enqueue'] / base['enqueue']:.2f} | "
            f"{m['drain']:,.0f} | {m['drain'] / base['drain']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
