"""fusion-jobs side by side with bare Dramatiq, django-dramatiq's AdminMiddleware and Celery 5, in one run.

    .venv/bin/python bench/compare.py [--quick] [--n N] [--reps R] [--chart bench/results/compare.png]
                                      [--write-docs]

Everything runs on this machine's loopback services: RabbitMQ vhost ``fj_perf`` (guest/guest) and
the PostgreSQL database ``fj_bench`` (created and migrated with ``manage.py migrate`` under
``bench.settings``). The script starts and stops its own workers, purges its queues, and stops by
itself (``--max-minutes``); Ctrl-C cleans up too. Each repetition runs every configuration once,
in rotating order, so all of them see the same machine weather; figures are medians over the
repetitions, and a ratio is the median of the per-repetition ratios.

What is measured, per repetition (see ``docs/benchmarks.md`` for the latest results):

* **Drain**: N no-op runs are published first (fusion-jobs with ``enqueue_many``, so every run
  has its ``JobRun`` row), then the worker starts (2 processes x 8 threads: ``manage.py
  rundramatiq -p 2 -t 8``, ``python -m dramatiq ... -p 2 -t 8``; Celery prefork ``-c 2`` and
  threads ``-c 8``). Throughput = runs / (last completion - first task-body start). Every task
  body appends ``time.time()`` to a side-channel file (``bench/sidechannel.py``: one ``O_APPEND``
  write, no service, so it can't bottleneck); the first body start comes from there. The last
  completion is the last body start for bare Dramatiq and Celery, ``max(finished_at)`` of the
  succeeded ``JobRun`` rows for fusion-jobs (the end batch's timestamp, taken just before its
  commit), and ``max(updated_at)`` of the ``done`` Task rows for django-dramatiq. Worker boot is
  excluded. PostgreSQL commits per run come from ``pg_stat_database.xact_commit``.
* **Enqueue**: one client thread of Django code, each call timed: ``enqueue()`` (row + publish
  with confirms), ``enqueue_many()`` of 100 and 1000, Dramatiq ``send`` with confirms on and off,
  django-dramatiq ``send`` (its ``Task`` row), Celery ``delay``. No worker runs meanwhile.
* **Enqueue to start**: runs sent one at a time to an idle worker, the next 10 ms after the
  previous one started; latency = task-body ``time.time()`` - ``time.time()`` just before the
  call (one clock: same machine).
* **Inline**: ``enqueue()`` with jobs disabled (recording on) vs a direct call of the same empty
  function, on SQLite in memory and on PostgreSQL, in a child process each.
"""

# ruff: noqa: RUF001  (the multiplication, division and dash signs in printed text are meant)
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DB = "fj_bench"
VHOST = "fj_perf"
BROKER_URL = f"amqp://guest:guest@127.0.0.1:5672/{VHOST}"
RESULTS = ROOT / "bench" / "results" / "compare.json"
DOCS = ROOT / "docs" / "benchmarks.md"
PROCESSES, THREADS = 2, 8
#: Bare Dramatiq's default prefetch (twice the threads), given to fusion-jobs' worker too so both
#: take the same number of messages ahead; rundramatiq's own default is one per thread.
PREFETCH = 2 * THREADS
FJ_QUEUE, BARE_QUEUE, DD_QUEUE, CELERY_QUEUE = "bench_fj", "bench_bare", "bench_dd", "bench_celery"
ALL_QUEUES = (FJ_QUEUE, BARE_QUEUE, DD_QUEUE, CELERY_QUEUE)
LATENCY_GAP = 0.010
CONFIGS = ("fusion_jobs", "dramatiq", "dd_admin", "celery_prefork", "celery_threads")
LABELS = {
    "fusion_jobs": "fusion-jobs",
    "dramatiq": "Dramatiq",
    "dd_admin": "django-dramatiq admin",
    "celery_prefork": "Celery prefork 2",
    "celery_threads": "Celery threads 8",
}
TARGETS = {
    "drain_vs_dramatiq": 0.6,
    "drain_vs_dd_admin": 5.0,
    "drain_vs_celery": 1.5,
    "latency_p50_vs_dramatiq": 1.5,
    "enqueue_p50_ms": 2.0,
    "inline_overhead_us": 500.0,
}

_workers: list[Worker] = []
_deadline = float("inf")


class BenchError(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"[compare {time.strftime('%H:%M:%S')}] {message}", flush=True)


def masked(url: str) -> str:
    from fusion_jobs.utils import mask_url

    return mask_url(url) or ""


def check_deadline(what: str) -> None:
    if time.monotonic() > _deadline:
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


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as handle:
        fields = [float(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


# --- workers ---------------------------------------------------------------------------------------


class Worker:
    """A worker command in its own session, stopped by its process group (it and its children only)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logdir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = logdir / f"{name}-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _workers.append(self)
        return self

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(f"{self.name} worker exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        else:
            # The leader is gone; make sure nothing it started is left behind.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self in _workers:
            _workers.remove(self)


def stop_all_workers() -> None:
    for worker in list(_workers):
        try:
            worker.stop()
        except Exception as exc:  # cleanup goes on
            log(f"could not stop {worker.name}: {exc}")


# --- services --------------------------------------------------------------------------------------


def amqp() -> Any:
    import pika

    return pika.BlockingConnection(pika.URLParameters(BROKER_URL))


def queue_depth(name: str) -> int:
    import pika

    connection = amqp()
    try:
        try:
            return int(connection.channel().queue_declare(queue=name, passive=True).method.message_count)
        except pika.exceptions.ChannelClosedByBroker:
            return 0
    finally:
        connection.close()


def purge(names: tuple[str, ...] = ALL_QUEUES, *, delete: bool = False) -> None:
    import pika

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
    import pika

    try:
        amqp().close()
        return
    except (pika.exceptions.ProbableAccessDeniedError, pika.exceptions.ConnectionClosedByBroker):
        pass
    log(f"creating RabbitMQ vhost {VHOST} (rabbitmqctl add_vhost, permissions for guest)")
    try:
        subprocess.run(["rabbitmqctl", "add_vhost", VHOST], check=True, capture_output=True, timeout=60)
        subprocess.run(
            ["rabbitmqctl", "set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*"],
            check=True,
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BenchError(
            f"RabbitMQ vhost {VHOST!r} is missing and could not be created with rabbitmqctl ({exc}); "
            f"create it: rabbitmqctl add_vhost {VHOST} && "
            f"rabbitmqctl set_permissions -p {VHOST} guest '.*' '.*' '.*'"
        ) from exc


def prepare_database() -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB]).fetchone():
            log(f"creating database {DB}")
            conn.execute(f"CREATE DATABASE {DB}")
    log(f"migrating {DB} (manage.py migrate, DJANGO_SETTINGS_MODULE=bench.settings)")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=child_env(), check=True, timeout=300
    )


def child_env(**extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "FJ_BENCH_BROKER_URL": BROKER_URL,
        "FUSION_JOBS_BROKER_URL": BROKER_URL,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("FJ_BENCH_DB", None)
    env.update(extra)
    return env


def sql(query: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(query, params or [])
        return list(cursor.fetchall()) if cursor.description else []


def truncate_runs() -> None:
    sql("TRUNCATE fusion_jobs_jobrun CASCADE")


def truncate_dd_tasks() -> None:
    sql("TRUNCATE django_dramatiq_task")


def pg_counters() -> dict[str, int]:
    """Write transactions so far, cluster-wide: the next transaction id to be assigned.

    Each transaction that writes (and so commits to the WAL) takes one id when it starts writing,
    so the difference over a drain counts commits exactly and at once; ``pg_stat_database``
    would lag (a backend left idle after the drain may not flush its counts for seconds). Nothing
    else writes to this cluster's databases during a benchmark on this machine.
    """
    row = sql("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")[0]
    return {"commits": int(row[0])}


# --- clients ---------------------------------------------------------------------------------------


class Clients:
    """Everything the harness sends with, built once after ``django.setup()``."""

    def __init__(self) -> None:
        from bench.app.tasks import noop
        from bench.peers import celery_app, dd_admin, dramatiq_bare
        from fusion_jobs import enqueue, enqueue_many

        self.fj_task = noop
        self.enqueue = enqueue
        self.enqueue_many = enqueue_many
        self.bare_off = dramatiq_bare.actor
        self.bare_on = dramatiq_bare.build(confirm=True)[1]
        self.dd_admin = dd_admin.actor
        self.dd_plain = dd_admin.build(admin=False)[1]
        self.celery = celery_app.noop


# --- phases ----------------------------------------------------------------------------------------


def time_calls(call: Callable[[], Any], calls: int, per_call: int = 1, warmup: int = 10) -> dict[str, float]:
    for _ in range(warmup):
        call()
    durations = []
    started = time.perf_counter()
    for index in range(calls):
        if index % 200 == 0:
            check_deadline("enqueue")
        t0 = time.perf_counter()
        call()
        durations.append(time.perf_counter() - t0)
    total = time.perf_counter() - started
    return {
        "rate": calls * per_call / total,
        "p50_ms": pct(durations, 50) * 1000,
        "p99_ms": pct(durations, 99) * 1000,
        "calls": calls,
    }


def phase_enqueue(clients: Clients, args: argparse.Namespace) -> dict[str, Any]:
    n = args.enqueue_n
    out: dict[str, Any] = {}
    truncate_runs()
    out["fusion_jobs"] = time_calls(lambda: clients.enqueue(clients.fj_task, p="e"), n)
    truncate_runs()
    purge((FJ_QUEUE,))
    for size in (100, 1000):
        batch = [{"p": "e"}] * size
        out[f"fusion_jobs_many{size}"] = time_calls(
            lambda batch=batch: clients.enqueue_many(clients.fj_task, batch),
            max(2, args.batch_runs // size),
            per_call=size,
            warmup=1,
        )
        truncate_runs()
        purge((FJ_QUEUE,))
    out["dramatiq_confirm"] = time_calls(lambda: clients.bare_on.send(p="e"), n)
    out["dramatiq_noconfirm"] = time_calls(lambda: clients.bare_off.send(p="e"), n)
    purge((BARE_QUEUE,))
    out["dd_admin"] = time_calls(lambda: clients.dd_admin.send(p="e"), max(100, n // 4))
    truncate_dd_tasks()
    purge((DD_QUEUE,))
    out["celery"] = time_calls(lambda: clients.celery.delay(p="e"), n)
    purge((CELERY_QUEUE,))
    return out


def wait_depth(queue: str, n: int) -> None:
    wait_until(lambda: queue_depth(queue) >= n, 60, f"{n} messages in {queue}", interval=0.1)


def wait_drained(worker: Worker, tsdir: str, n: int, timeout: float) -> tuple[float, float, float]:
    """Wait until n bodies ran; returns (busy fraction of the machine, first seen, all seen)."""
    from bench.sidechannel import count

    end = time.monotonic() + timeout
    cpu0: tuple[float, float] | None = None
    first_seen = 0.0
    while True:
        done = count(tsdir, "d")
        if done and cpu0 is None:
            cpu0, first_seen = cpu_times(), time.time()
        if done >= n:
            break
        worker.check()
        check_deadline(f"{worker.name} drain")
        if time.monotonic() > end:
            raise BenchError(
                f"{worker.name}: only {done}/{n} runs done after {timeout:.0f} s\n{worker.tail()}"
            )
        time.sleep(0.02)
    cpu1 = cpu_times()
    busy = (cpu1[0] - cpu0[0]) / max(1.0, cpu1[1] - cpu0[1]) if cpu0 else float("nan")
    return busy, first_seen, time.time()


def measure_latency(
    send: Callable[[], Any], tsdir: str, phase: str, n: int, worker: Worker
) -> dict[str, float]:
    """Send n runs one at a time (after 5 warm-up sends), each once the previous one has started."""
    from bench.sidechannel import read

    warmup = 5
    sent = [send_and_wait(send, tsdir, phase, index, worker) for index in range(warmup + n)]
    started = read(tsdir, phase)
    if len(started) != warmup + n:
        raise BenchError(f"{worker.name}: {len(started)} task starts for {warmup + n} sends")
    latencies = [(body - t0) * 1000 for body, t0 in zip(started[warmup:], sent[warmup:], strict=True)]
    return {
        "p50_ms": pct(latencies, 50),
        "p99_ms": pct(latencies, 99),
        "mean_ms": statistics.fmean(latencies),
    }


def send_and_wait(send: Callable[[], Any], tsdir: str, phase: str, index: int, worker: Worker) -> float:
    from bench.sidechannel import count

    t0 = time.time()
    send()
    end = time.monotonic() + 10
    while count(tsdir, phase) <= index:
        if time.monotonic() > end:
            worker.check()
            raise BenchError(f"{worker.name}: run {index} of {phase} did not start within 10 s")
        time.sleep(0.0003)
    time.sleep(LATENCY_GAP)
    return t0


def new_tsdir(logdir: Path, name: str) -> str:
    return tempfile.mkdtemp(prefix=f"{name}-", dir=logdir)


def drain_rate(n: int, first_body: float, last_done: float) -> float:
    return n / max(1e-6, last_done - first_body)


def run_fusion_jobs(clients: Clients, args: argparse.Namespace, logdir: Path) -> tuple[dict, dict]:
    from bench.sidechannel import read

    n = args.n
    truncate_runs()
    purge((FJ_QUEUE,))
    t0 = time.perf_counter()
    for start in range(0, n, 1000):
        clients.enqueue_many(clients.fj_task, [{"p": "d"}] * min(1000, n - start))
    preload = n / (time.perf_counter() - t0)
    wait_depth(FJ_QUEUE, n)
    tsdir = new_tsdir(logdir, "fj")
    before = pg_counters()
    worker = Worker(
        "fusion-jobs",
        [
            sys.executable,
            "manage.py",
            "rundramatiq",
            "-p",
            str(PROCESSES),
            "-t",
            str(THREADS),
            "-Q",
            FJ_QUEUE,
            "--prefetch",
            str(PREFETCH),
        ],
        child_env(FJ_BENCH_TS_DIR=tsdir),
        logdir,
    ).start()
    try:
        busy, _, _ = wait_drained(worker, tsdir, n, 60 + n / 100)

        def finished() -> bool:
            return sql("SELECT count(*) FROM fusion_jobs_jobrun WHERE status = 'succeeded'")[0][0] >= n

        wait_until(finished, 60, "every JobRun to be succeeded", interval=0.02)
        after = pg_counters()
        (last_finished, statuses) = sql(
            "SELECT max(finished_at), json_object_agg(status, c) FROM "
            "(SELECT status, count(*) AS c, max(finished_at) AS finished_at FROM fusion_jobs_jobrun "
            "GROUP BY status) s"
        )[0]
        bodies = read(tsdir, "d")
        first = min(bodies)
        last = max(last_finished.timestamp(), max(bodies))
        drain = {
            "rate": drain_rate(n, first, last),
            "n": n,
            "seconds": last - first,
            "busy": busy,
            "preload_rate": preload,
            "statuses": statuses,
            "pg_per_run": {k: (after[k] - before[k]) / n for k in after},
        }
        latency = {
            "fusion_jobs": measure_latency(
                lambda: clients.enqueue(clients.fj_task, p="lat"), tsdir, "lat", args.latency_n, worker
            )
        }
    finally:
        worker.stop()
    purge((FJ_QUEUE,))
    return drain, latency


def run_dramatiq(clients: Clients, args: argparse.Namespace, logdir: Path) -> tuple[dict, dict]:
    from bench.sidechannel import read

    n = args.n
    purge((BARE_QUEUE,))
    t0 = time.perf_counter()
    for _ in range(n):
        clients.bare_off.send(p="d")
    preload = n / (time.perf_counter() - t0)
    wait_depth(BARE_QUEUE, n)
    tsdir = new_tsdir(logdir, "dq")
    worker = Worker(
        "dramatiq",
        [
            sys.executable,
            "-m",
            "dramatiq",
            "bench.peers.dramatiq_bare:broker",
            "-p",
            str(PROCESSES),
            "-t",
            str(THREADS),
            "-Q",
            BARE_QUEUE,
        ],
        child_env(FJ_BENCH_TS_DIR=tsdir),
        logdir,
    ).start()
    try:
        busy, _, _ = wait_drained(worker, tsdir, n, 60 + n / 200)
        bodies = read(tsdir, "d")
        drain = {
            "rate": drain_rate(n, min(bodies), max(bodies)),
            "n": n,
            "seconds": max(bodies) - min(bodies),
            "busy": busy,
            "preload_rate": preload,
        }
        latency = {
            "dramatiq_confirm": measure_latency(
                lambda: clients.bare_on.send(p="lc"), tsdir, "lc", args.latency_n, worker
            ),
            "dramatiq_noconfirm": measure_latency(
                lambda: clients.bare_off.send(p="lo"), tsdir, "lo", args.latency_n, worker
            ),
        }
    finally:
        worker.stop()
    purge((BARE_QUEUE,))
    return drain, latency


def run_dd_admin(clients: Clients, args: argparse.Namespace, logdir: Path) -> tuple[dict, dict]:
    from django_dramatiq.models import Task

    from bench.sidechannel import read

    n = args.dd_n
    truncate_dd_tasks()
    purge((DD_QUEUE,))
    messages = [clients.dd_plain.send(p="d") for _ in range(n)]
    # The rows AdminMiddleware would have written at enqueue, written in bulk to keep the preload short.
    Task.tasks.bulk_create(
        [
            Task(
                id=m.message_id,
                status=Task.STATUS_ENQUEUED,
                message_data=m.encode(),
                actor_name=m.actor_name,
                queue_name=m.queue_name,
            )
            for m in messages
        ],
        batch_size=1000,
    )
    wait_depth(DD_QUEUE, n)
    tsdir = new_tsdir(logdir, "dd")
    before = pg_counters()
    worker = Worker(
        "django-dramatiq",
        [
            sys.executable,
            "-m",
            "dramatiq",
            "bench.peers.dd_admin:broker",
            "-p",
            str(PROCESSES),
            "-t",
            str(THREADS),
            "-Q",
            DD_QUEUE,
        ],
        child_env(FJ_BENCH_TS_DIR=tsdir, FUSION_JOBS_BROKER_URL=""),
        logdir,
    ).start()
    try:
        busy, _, _ = wait_drained(worker, tsdir, n, 60 + n / 50)

        def finished() -> bool:
            return sql("SELECT count(*) FROM django_dramatiq_task WHERE status = 'done'")[0][0] >= n

        wait_until(finished, 60, "every django-dramatiq Task to be done", interval=0.02)
        after = pg_counters()
        last_updated = sql("SELECT max(updated_at) FROM django_dramatiq_task WHERE status = 'done'")[0][0]
        bodies = read(tsdir, "d")
        last = max(last_updated.timestamp(), max(bodies))
        drain = {
            "rate": drain_rate(n, min(bodies), last),
            "n": n,
            "seconds": last - min(bodies),
            "busy": busy,
            "pg_per_run": {k: (after[k] - before[k]) / n for k in after},
        }
        latency = {
            "dd_admin": measure_latency(
                lambda: clients.dd_admin.send(p="lat"), tsdir, "lat", args.latency_n, worker
            )
        }
    finally:
        worker.stop()
    purge((DD_QUEUE,))
    truncate_dd_tasks()
    return drain, latency


def run_celery(pool: str, clients: Clients, args: argparse.Namespace, logdir: Path) -> tuple[dict, dict]:
    from bench.sidechannel import read

    n = args.n
    concurrency = PROCESSES if pool == "prefork" else THREADS
    name = f"celery_{pool}"
    purge((CELERY_QUEUE,))
    t0 = time.perf_counter()
    for _ in range(n):
        clients.celery.delay(p="d")
    preload = n / (time.perf_counter() - t0)
    wait_depth(CELERY_QUEUE, n)
    tsdir = new_tsdir(logdir, name)
    worker = Worker(
        name,
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.peers.celery_app",
            "worker",
            "-P",
            pool,
            "-c",
            str(concurrency),
            "-Q",
            CELERY_QUEUE,
            "-l",
            "WARNING",
            "-n",
            f"{name}-{os.getpid()}@%h",
            "--without-mingle",
            "--without-gossip",
        ],
        child_env(FJ_BENCH_TS_DIR=tsdir),
        logdir,
    ).start()
    try:
        busy, _, _ = wait_drained(worker, tsdir, n, 60 + n / 100)
        bodies = read(tsdir, "d")
        drain = {
            "rate": drain_rate(n, min(bodies), max(bodies)),
            "n": n,
            "seconds": max(bodies) - min(bodies),
            "busy": busy,
            "preload_rate": preload,
        }
        latency = {
            name: measure_latency(lambda: clients.celery.delay(p="lat"), tsdir, "lat", args.latency_n, worker)
        }
    finally:
        worker.stop()
    purge((CELERY_QUEUE,))
    return drain, latency


def run_inline_children(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for db, calls in (("sqlite", args.inline_calls), ("postgres", max(200, args.inline_calls // 3))):
        log(f"inline: enqueue() with jobs disabled vs a direct call, {db}, {calls} calls x {args.reps} reps")
        env = child_env(FJ_BENCH_DB=db, FUSION_JOBS_BROKER_URL="")
        proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__)),
                *("--inline-child", db, "--reps", str(args.reps), "--inline-calls", str(calls)),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        result = None
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("RESULT "):
                    result = json.loads(line[len("RESULT ") :])
                elif line.strip():
                    print(f"    {line.rstrip()}", flush=True)
            proc.wait(60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        if proc.returncode or result is None:
            raise BenchError(f"inline child ({db}) failed with {proc.returncode}")
        out[db] = result
    return out


def inline_child(db: str, reps: int, calls: int) -> None:
    """Child process: time enqueue() inline against a direct call; prints one RESULT line."""
    import timeit

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    if db == "sqlite":
        call_command("migrate", verbosity=0)
    from bench.app.tasks import inline_noop, plain_noop
    from fusion_jobs import enqueue, is_jobs_enabled
    from fusion_jobs.models import JobRun

    assert not is_jobs_enabled()
    per_rep = []
    for rep in range(reps):
        if db == "postgres":
            with connection.cursor() as cursor:
                cursor.execute("TRUNCATE fusion_jobs_jobrun CASCADE")
        else:
            JobRun.objects.all().delete()
        for _ in range(50):
            enqueue(inline_noop, p="i")
        timer = timeit.Timer("f(p='i')", globals={"f": plain_noop})
        direct_us = min(timer.repeat(5, 200_000)) / 200_000 * 1e6
        durations = []
        started = time.perf_counter()
        for _ in range(calls):
            t0 = time.perf_counter()
            enqueue(inline_noop, p="i")
            durations.append(time.perf_counter() - t0)
        enqueue_us = (time.perf_counter() - started) / calls * 1e6
        statuses = dict(JobRun.objects.values_list("status").annotate(c=django.db.models.Count("id")))
        per_rep.append(
            {
                "direct_us": direct_us,
                "enqueue_us": enqueue_us,
                "enqueue_p50_us": pct(durations, 50) * 1e6,
                "overhead_us": enqueue_us - direct_us,
                "statuses": statuses,
            }
        )
        print(
            f"inline {db} rep {rep + 1}/{reps}: direct {direct_us:.3f} µs, enqueue() {enqueue_us:.0f} µs per call "
            f"(p50 {per_rep[-1]['enqueue_p50_us']:.0f}), overhead {enqueue_us - direct_us:.0f} µs",
            flush=True,
        )
    print("RESULT " + json.dumps({"reps": per_rep}), flush=True)


# --- summary ---------------------------------------------------------------------------------------


def median_of(reps: list[dict[str, Any]], getter: Callable[[dict[str, Any]], float | None]) -> float | None:
    values = []
    for rep in reps:
        try:
            value = getter(rep)
        except (KeyError, TypeError):
            value = None
        if value is not None:
            values.append(value)
    return statistics.median(values) if values else None


def summarize(reps: list[dict[str, Any]], inline: dict[str, Any]) -> dict[str, Any]:
    """Medians of every figure, and medians of the per-repetition fusion-jobs / peer ratios."""

    def drain(config: str) -> Callable[[dict], float]:
        return lambda rep: rep["drain"][config]["rate"]

    def enq(client: str, key: str = "rate") -> Callable[[dict], float]:
        return lambda rep: rep["enqueue"][client][key]

    def lat(config: str, key: str) -> Callable[[dict], float]:
        return lambda rep: rep["latency"][config][key]

    def best_celery_drain(rep: dict) -> float:
        return max(rep["drain"]["celery_prefork"]["rate"], rep["drain"]["celery_threads"]["rate"])

    def best_celery_latency(key: str) -> Callable[[dict], float]:
        return lambda rep: min(rep["latency"]["celery_prefork"][key], rep["latency"]["celery_threads"][key])

    def ratio(a: Callable[[dict], float], b: Callable[[dict], float]) -> Callable[[dict], float]:
        return lambda rep: a(rep) / b(rep)

    m: dict[str, Any] = {"median": {}, "ratio": {}, "spread": {}}
    figures: dict[str, Callable[[dict], float]] = {}
    for config in CONFIGS:
        figures[f"drain.{config}"] = drain(config)
    for client in (
        "fusion_jobs",
        "fusion_jobs_many100",
        "fusion_jobs_many1000",
        "dramatiq_confirm",
        "dramatiq_noconfirm",
        "dd_admin",
        "celery",
    ):
        for key in ("rate", "p50_ms", "p99_ms"):
            figures[f"enqueue.{client}.{key}"] = enq(client, key)
    for config in (
        "fusion_jobs",
        "dramatiq_confirm",
        "dramatiq_noconfirm",
        "dd_admin",
        "celery_prefork",
        "celery_threads",
    ):
        for key in ("p50_ms", "p99_ms"):
            figures[f"latency.{config}.{key}"] = lat(config, key)
    for name, getter in figures.items():
        m["median"][name] = median_of(reps, getter)
        values = []
        for rep in reps:
            with contextlib.suppress(KeyError, TypeError):
                values.append(getter(rep))
        m["spread"][name] = [min(values), max(values)] if values else None
    ratios = {
        "drain_vs_dramatiq": ratio(drain("fusion_jobs"), drain("dramatiq")),
        "drain_vs_dd_admin": ratio(drain("fusion_jobs"), drain("dd_admin")),
        "drain_vs_celery": ratio(drain("fusion_jobs"), best_celery_drain),
        "drain_vs_celery_prefork": ratio(drain("fusion_jobs"), drain("celery_prefork")),
        "drain_vs_celery_threads": ratio(drain("fusion_jobs"), drain("celery_threads")),
        "enqueue_vs_dramatiq_confirm": ratio(enq("fusion_jobs"), enq("dramatiq_confirm")),
        "enqueue_vs_dramatiq_noconfirm": ratio(enq("fusion_jobs"), enq("dramatiq_noconfirm")),
        "enqueue_vs_celery": ratio(enq("fusion_jobs"), enq("celery")),
        "enqueue_vs_dd_admin": ratio(enq("fusion_jobs"), enq("dd_admin")),
        "enqueue_p50_vs_dramatiq_confirm": ratio(
            enq("fusion_jobs", "p50_ms"), enq("dramatiq_confirm", "p50_ms")
        ),
        "enqueue_p50_vs_celery": ratio(enq("fusion_jobs", "p50_ms"), enq("celery", "p50_ms")),
        "many100_vs_dramatiq_confirm": ratio(enq("fusion_jobs_many100"), enq("dramatiq_confirm")),
        "many1000_vs_dramatiq_confirm": ratio(enq("fusion_jobs_many1000"), enq("dramatiq_confirm")),
        "many100_vs_celery": ratio(enq("fusion_jobs_many100"), enq("celery")),
        "many1000_vs_celery": ratio(enq("fusion_jobs_many1000"), enq("celery")),
        "latency_p50_vs_dramatiq": ratio(lat("fusion_jobs", "p50_ms"), lat("dramatiq_confirm", "p50_ms")),
        "latency_p99_vs_dramatiq": ratio(lat("fusion_jobs", "p99_ms"), lat("dramatiq_confirm", "p99_ms")),
        "latency_p50_vs_dramatiq_noconfirm": ratio(
            lat("fusion_jobs", "p50_ms"), lat("dramatiq_noconfirm", "p50_ms")
        ),
        "latency_p99_vs_dramatiq_noconfirm": ratio(
            lat("fusion_jobs", "p99_ms"), lat("dramatiq_noconfirm", "p99_ms")
        ),
        "latency_p50_vs_celery": ratio(lat("fusion_jobs", "p50_ms"), best_celery_latency("p50_ms")),
        "latency_p99_vs_celery": ratio(lat("fusion_jobs", "p99_ms"), best_celery_latency("p99_ms")),
        "latency_p50_vs_dd_admin": ratio(lat("fusion_jobs", "p50_ms"), lat("dd_admin", "p50_ms")),
    }
    for name, getter in ratios.items():
        m["ratio"][name] = median_of(reps, getter)
    for db, data in inline.items():
        for key in ("direct_us", "enqueue_us", "enqueue_p50_us", "overhead_us"):
            m["median"][f"inline.{db}.{key}"] = statistics.median(r[key] for r in data["reps"])
    m["median"]["pg_per_run.fusion_jobs"] = {
        key: median_of(reps, lambda rep, key=key: rep["drain"]["fusion_jobs"]["pg_per_run"][key])
        for key in ("commits",)
    }
    m["median"]["pg_per_run.dd_admin"] = {
        key: median_of(reps, lambda rep, key=key: rep["drain"]["dd_admin"]["pg_per_run"][key])
        for key in ("commits",)
    }
    m["median"]["busy"] = {
        config: median_of(reps, lambda rep, c=config: rep["drain"][c]["busy"]) for config in CONFIGS
    }
    m["targets"] = targets(m)
    return m


def targets(m: dict[str, Any]) -> list[dict[str, Any]]:
    med, rat = m["median"], m["ratio"]
    rows = [
        ("drain ÷ bare Dramatiq", rat["drain_vs_dramatiq"], ">=", TARGETS["drain_vs_dramatiq"], "×"),
        (
            "drain ÷ django-dramatiq AdminMiddleware",
            rat["drain_vs_dd_admin"],
            ">=",
            TARGETS["drain_vs_dd_admin"],
            "×",
        ),
        ("drain ÷ Celery (faster pool)", rat["drain_vs_celery"], ">=", TARGETS["drain_vs_celery"], "×"),
        (
            "enqueue→start p50 ÷ bare Dramatiq (confirms on)",
            rat["latency_p50_vs_dramatiq"],
            "<=",
            TARGETS["latency_p50_vs_dramatiq"],
            "×",
        ),
        (
            "enqueue() p50 (row + confirmed publish)",
            med["enqueue.fusion_jobs.p50_ms"],
            "<",
            TARGETS["enqueue_p50_ms"],
            "ms",
        ),
    ]
    for db in ("sqlite", "postgres"):
        value = med.get(f"inline.{db}.overhead_us")
        rows.append(
            (f"inline overhead over a direct call, {db}", value, "<", TARGETS["inline_overhead_us"], "µs")
        )
    out = []
    for name, value, op, target, unit in rows:
        if value is None:
            met = None
        elif op == ">=":
            met = value >= target
        elif op == "<=":
            met = value <= target
        else:
            met = value < target
        out.append({"target": name, "value": value, "op": op, "goal": target, "unit": unit, "met": met})
    return out


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def table_rows(m: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    med, rat = m["median"], m["ratio"]

    def lat_cell(config: str) -> str:
        return f"{fmt(med[f'latency.{config}.p50_ms'], 2)} / {fmt(med[f'latency.{config}.p99_ms'], 2)}"

    def enq_cell(client: str) -> str:
        return f"{fmt(med[f'enqueue.{client}.p50_ms'], 2)} / {fmt(med[f'enqueue.{client}.p99_ms'], 2)}"

    header = [
        "figure (median)",
        "fusion-jobs",
        "Dramatiq",
        "django-dramatiq admin",
        "Celery prefork 2",
        "Celery threads 8",
        "fj ÷ Dramatiq",
        "fj ÷ Celery",
        "fj ÷ dd admin",
    ]
    rows = [
        [
            "drain, runs/s (2 proc × 8 thr)",
            fmt(med["drain.fusion_jobs"]),
            fmt(med["drain.dramatiq"]),
            fmt(med["drain.dd_admin"]),
            fmt(med["drain.celery_prefork"]),
            fmt(med["drain.celery_threads"]),
            fmt_ratio(rat["drain_vs_dramatiq"]),
            fmt_ratio(rat["drain_vs_celery"]),
            fmt_ratio(rat["drain_vs_dd_admin"]),
        ],
        [
            "enqueue, runs/s (1 thread; Dramatiq with confirms)",
            fmt(med["enqueue.fusion_jobs.rate"]),
            fmt(med["enqueue.dramatiq_confirm.rate"]),
            fmt(med["enqueue.dd_admin.rate"]),
            fmt(med["enqueue.celery.rate"]),
            "(same client)",
            fmt_ratio(rat["enqueue_vs_dramatiq_confirm"]),
            fmt_ratio(rat["enqueue_vs_celery"]),
            fmt_ratio(rat["enqueue_vs_dd_admin"]),
        ],
        [
            "enqueue call p50 / p99, ms",
            enq_cell("fusion_jobs"),
            enq_cell("dramatiq_confirm"),
            enq_cell("dd_admin"),
            enq_cell("celery"),
            "(same client)",
            fmt_ratio(rat["enqueue_p50_vs_dramatiq_confirm"]),
            fmt_ratio(rat["enqueue_p50_vs_celery"]),
            "",
        ],
        [
            "enqueue, runs/s: Dramatiq confirms off",
            fmt(med["enqueue.fusion_jobs.rate"]),
            f"{fmt(med['enqueue.dramatiq_noconfirm.rate'])} (p50 {fmt(med['enqueue.dramatiq_noconfirm.p50_ms'], 2)} ms)",
            "",
            "",
            "",
            fmt_ratio(rat["enqueue_vs_dramatiq_noconfirm"]),
            "",
            "",
        ],
        [
            "enqueue_many(100), runs/s",
            f"{fmt(med['enqueue.fusion_jobs_many100.rate'])} ({fmt(med['enqueue.fusion_jobs_many100.p50_ms'], 1)} ms/call)",
            "",
            "",
            "",
            "",
            fmt_ratio(rat["many100_vs_dramatiq_confirm"]),
            fmt_ratio(rat["many100_vs_celery"]),
            "",
        ],
        [
            "enqueue_many(1000), runs/s",
            f"{fmt(med['enqueue.fusion_jobs_many1000.rate'])} ({fmt(med['enqueue.fusion_jobs_many1000.p50_ms'], 1)} ms/call)",
            "",
            "",
            "",
            "",
            fmt_ratio(rat["many1000_vs_dramatiq_confirm"]),
            fmt_ratio(rat["many1000_vs_celery"]),
            "",
        ],
        [
            "enqueue→start p50 / p99, ms (Dramatiq with confirms)",
            lat_cell("fusion_jobs"),
            lat_cell("dramatiq_confirm"),
            lat_cell("dd_admin"),
            lat_cell("celery_prefork"),
            lat_cell("celery_threads"),
            fmt_ratio(rat["latency_p50_vs_dramatiq"]),
            fmt_ratio(rat["latency_p50_vs_celery"]),
            fmt_ratio(rat["latency_p50_vs_dd_admin"]),
        ],
        [
            "enqueue→start p50 / p99, ms: Dramatiq confirms off",
            lat_cell("fusion_jobs"),
            lat_cell("dramatiq_noconfirm"),
            "",
            "",
            "",
            fmt_ratio(rat["latency_p50_vs_dramatiq_noconfirm"]),
            "",
            "",
        ],
    ]
    for db, label in (("sqlite", "SQLite in memory"), ("postgres", "PostgreSQL")):
        if f"inline.{db}.overhead_us" in med:
            rows.append(
                [
                    f"inline enqueue() overhead over a direct call, µs ({label})",
                    f"{fmt(med[f'inline.{db}.overhead_us'])} (call {fmt(med[f'inline.{db}.direct_us'], 3)})",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                ]
            )
    return header, rows


def render_text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(header))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    return "\n".join(lines)


def render_markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render_targets(m: dict[str, Any], markdown: bool) -> str:
    lines = []
    for t in m["targets"]:
        digits = 0 if t["unit"] == "µs" else 2
        verdict = "n/a" if t["met"] is None else ("met" if t["met"] else "MISSED")
        value = fmt(t["value"], digits)
        unit = t["unit"] if t["unit"] != "×" else "×"
        text = f"{t['target']}: {value} {unit} (goal {t['op']} {fmt(t['goal'], digits)} {unit}) — {verdict}"
        lines.append(f"- {text}" if markdown else f"  {text}")
    return "\n".join(lines)


# --- machine, output -------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    from importlib.metadata import version

    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = None
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as handle:
        mem_gib = round(int(handle.readline().split()[1]) / 1024 / 1024, 1)
    versions = {}
    for package in ("Django", "dramatiq", "django-dramatiq", "celery", "kombu", "amqp", "pika", "psycopg"):
        with contextlib.suppress(Exception):
            versions[package] = version(package)
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": mem_gib,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }
    with contextlib.suppress(Exception):
        info["postgresql"] = sql("SHOW server_version")[0][0]
        info["synchronous_commit"] = sql("SHOW synchronous_commit")[0][0]
    with contextlib.suppress(Exception):
        connection = amqp()
        version_value = connection._impl.server_properties.get("version", "")
        info["rabbitmq"] = version_value.decode() if isinstance(version_value, bytes) else str(version_value)
        connection.close()
    return info


def write_chart(path: Path, m: dict[str, Any], reps: list[dict[str, Any]], machine: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    med, spread = m["median"], m["spread"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2))
    colors = {"fj": "#2b6cb0", "peer": "#a0aec0", "dd": "#c05621", "celery": "#718096"}

    def bars(ax: Any, items: list[tuple[str, str, str]], title: str, ylabel: str) -> None:
        labels = [label for label, _, _ in items]
        values = [med.get(key) or 0 for _, key, _ in items]
        errs = [
            [v - (spread.get(key) or [v, v])[0] for v, (_, key, _) in zip(values, items, strict=True)],
            [(spread.get(key) or [v, v])[1] - v for v, (_, key, _) in zip(values, items, strict=True)],
        ]
        ax.bar(labels, values, yerr=errs, capsize=3, color=[colors[c] for _, _, c in items])
        for index, value in enumerate(values):
            ax.text(index, value + errs[1][index], f"{value:,.0f}", ha="center", va="bottom", fontsize=8)
        ax.set_title(title, fontsize=11)
        ax.set_ylabel(ylabel)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")

    bars(
        axes[0],
        [
            ("fusion-jobs\n(tracked)", "drain.fusion_jobs", "fj"),
            ("Dramatiq", "drain.dramatiq", "peer"),
            ("dd AdminMiddleware", "drain.dd_admin", "dd"),
            ("Celery prefork 2", "drain.celery_prefork", "celery"),
            ("Celery threads 8", "drain.celery_threads", "celery"),
        ],
        "Worker drain, runs/s (higher is better)",
        "runs/s",
    )
    bars(
        axes[1],
        [
            ("enqueue()", "enqueue.fusion_jobs.rate", "fj"),
            ("enqueue_many(100)", "enqueue.fusion_jobs_many100.rate", "fj"),
            ("enqueue_many(1000)", "enqueue.fusion_jobs_many1000.rate", "fj"),
            ("Dramatiq send\n(confirms)", "enqueue.dramatiq_confirm.rate", "peer"),
            ("Dramatiq send\n(no confirms)", "enqueue.dramatiq_noconfirm.rate", "peer"),
            ("dd admin send", "enqueue.dd_admin.rate", "dd"),
            ("Celery delay", "enqueue.celery.rate", "celery"),
        ],
        "Enqueue from one thread, runs/s",
        "runs/s",
    )
    ax = axes[2]
    configs = [
        ("fusion-jobs", "fusion_jobs", "fj"),
        ("Dramatiq\n(confirms)", "dramatiq_confirm", "peer"),
        ("Dramatiq\n(no confirms)", "dramatiq_noconfirm", "peer"),
        ("dd admin", "dd_admin", "dd"),
        ("Celery prefork", "celery_prefork", "celery"),
        ("Celery threads", "celery_threads", "celery"),
    ]
    xs = range(len(configs))
    p50 = [med.get(f"latency.{key}.p50_ms") or 0 for _, key, _ in configs]
    p99 = [med.get(f"latency.{key}.p99_ms") or 0 for _, key, _ in configs]
    ax.bar([x - 0.2 for x in xs], p50, width=0.4, label="p50", color=[colors[c] for _, _, c in configs])
    ax.bar(
        [x + 0.2 for x in xs],
        p99,
        width=0.4,
        label="p99",
        color=[colors[c] for _, _, c in configs],
        alpha=0.45,
    )
    for x, (a, b) in enumerate(zip(p50, p99, strict=True)):
        ax.text(x - 0.2, a, f"{a:.1f}", ha="center", va="bottom", fontsize=7)
        ax.text(x + 0.2, b, f"{b:.1f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(list(xs), [label for label, _, _ in configs], rotation=30, ha="right", fontsize=8)
    ax.set_title("Enqueue → task start, ms (p50 solid, p99 light)", fontsize=11)
    ax.set_ylabel("ms")
    fig.suptitle(
        f"fusion-jobs vs peers — {machine.get('cores')} cores {machine.get('cpu')}, "
        f"RabbitMQ {machine.get('rabbitmq', '?')}, PostgreSQL {machine.get('postgresql', '?')}; "
        f"medians of {len(reps)} reps, bars span min–max",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


DOC_BEGIN = "<!-- compare.py:begin (generated by bench/compare.py --write-docs; edit outside the markers) -->"
DOC_END = "<!-- compare.py:end -->"
DOC_HEAD = """# Benchmarks

fusion-jobs side by side with bare Dramatiq, Dramatiq with django-dramatiq's `AdminMiddleware`, and
Celery 5, on the same RabbitMQ and PostgreSQL, in one run of:

```bash
.venv/bin/python bench/compare.py --chart bench/results/compare.png --write-docs   # ~10-15 min
.venv/bin/python bench/compare.py --quick                                           # ~4 min
```

The section below is rewritten by each `--write-docs` run; how each figure is measured is in the
docstring of `bench/compare.py` and summarised under the table.

"""


def write_docs(path: Path, m: dict[str, Any], result: dict[str, Any], chart: Path | None) -> None:
    header, rows = table_rows(m)
    machine = result["machine"]
    args = result["args"]
    versions = ", ".join(f"{k} {v}" for k, v in machine.get("versions", {}).items())
    loads = [rep["load"] for rep in result["reps"]]
    load_text = ", ".join(f"{a:.1f}" for a, _, _ in loads)
    busy = m["median"]["busy"]
    fj_pg = m["median"]["pg_per_run.fusion_jobs"]
    dd_pg = m["median"]["pg_per_run.dd_admin"]
    chart_md = ""
    if chart is not None:
        rel = os.path.relpath(chart, path.parent)
        chart_md = f"![throughput and latency]({rel})\n\n"
    body = f"""{DOC_BEGIN}
## Latest run: {result["finished_at"]}

{args["n"]:,} runs per drain ({args["dd_n"]:,} for django-dramatiq admin), {args["reps"]} repetitions,
{args["enqueue_n"]:,} single enqueues per client, {args["latency_n"]} latency samples per config.
Medians over the repetitions; a ratio is the median of the per-repetition ratios (fusion-jobs ÷ peer;
for Celery, the faster pool).

{render_markdown_table(header, rows)}

Targets:

{render_targets(m, markdown=True)}

{chart_md}Per run, fusion-jobs' worker made {fmt(fj_pg.get("commits"), 3)} PostgreSQL commits (write
transactions, counted by transaction id); django-dramatiq's AdminMiddleware
{fmt(dd_pg.get("commits"), 2)}. Whole-machine busy
fraction during the drains: {", ".join(f"{LABELS[c]} {100 * (busy[c] or 0):.0f} %" for c in CONFIGS)}.

**Machine**: {machine.get("cores")} cores, {machine.get("cpu")}, {machine.get("memory_gib")} GiB;
{machine.get("platform")}; Python {machine.get("python")}; PostgreSQL {machine.get("postgresql")}
(synchronous_commit={machine.get("synchronous_commit")}), RabbitMQ {machine.get("rabbitmq")};
{versions}. 1-minute load average at the start of each repetition: {load_text}
(other work shares this machine, so read the same-run ratios rather than absolute rates).

How: drain = runs ÷ (last completion − first task-body start), worker boot excluded; a completion is
the task body for Dramatiq and Celery, the committed `succeeded` row (`max(finished_at)`) for
fusion-jobs and the `done` Task row (`max(updated_at)`) for django-dramatiq. Workers: `manage.py
rundramatiq -p 2 -t 8 -Q bench_fj --prefetch 16` (fusion-jobs, with Dramatiq's default prefetch; rundramatiq's
own default of one per thread drained no-op runs about 15 % slower here),
`python -m dramatiq … -p 2 -t 8` (Dramatiq defaults, prefetch 16), Celery `-P prefork -c 2` and
`-P threads -c 8` (JSON, no result backend, early ack, prefetch ×4, `--without-mingle --without-gossip`
to shorten boot). Enqueue = one Django thread, each call timed, no worker running; fusion-jobs'
`enqueue()` outside a transaction writes its row (one commit, not waiting for the disk), publishes with a confirm and marks it
published. Enqueue→start = one run at a time to an idle worker, 10 ms apart. Inline = `enqueue()`
with no broker (the run executes in the call, its row recorded) minus a direct call of the same empty
function.
{DOC_END}
"""
    text = path.read_text() if path.exists() else DOC_HEAD
    if DOC_BEGIN in text and DOC_END in text:
        before, rest = text.split(DOC_BEGIN, 1)
        after = rest.split(DOC_END, 1)[1]
        text = before + body.rstrip("\n") + after
    else:
        text = text.rstrip("\n") + "\n\n" + body
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# --- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N and fewer samples (~4 min)")
    parser.add_argument("--n", type=int, help="runs per drain (default 20000, --quick 3000)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument(
        "--dd-n",
        type=int,
        help="runs per django-dramatiq admin drain (default min(N, 5000); it is ~15x slower)",
    )
    parser.add_argument(
        "--enqueue-n", type=int, help="single enqueues per client (default 2000, --quick 500)"
    )
    parser.add_argument(
        "--batch-runs", type=int, help="runs per enqueue_many size (default 5000, --quick 2000)"
    )
    parser.add_argument("--latency-n", type=int, help="enqueue→start samples (default 300, --quick 100)")
    parser.add_argument(
        "--inline-calls", type=int, help="inline enqueue() calls per rep (default 3000, --quick 1000)"
    )
    parser.add_argument("--chart", type=Path, help="write a PNG chart here (e.g. bench/results/compare.png)")
    parser.add_argument("--write-docs", action="store_true", help=f"write/update {DOCS.relative_to(ROOT)}")
    parser.add_argument(
        "--json", type=Path, default=RESULTS, help=f"JSON output (default {RESULTS.relative_to(ROOT)})"
    )
    parser.add_argument("--max-minutes", type=float, help="stop after this long (default 25, --quick 8)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["inline"], help=argparse.SUPPRESS)
    parser.add_argument("--inline-child", choices=["sqlite", "postgres"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    args.n = args.n or (3000 if quick else 20000)
    args.dd_n = args.dd_n or min(args.n, 1500 if quick else 5000)
    args.enqueue_n = args.enqueue_n or (500 if quick else 2000)
    args.batch_runs = args.batch_runs or (2000 if quick else 5000)
    args.latency_n = args.latency_n or (100 if quick else 300)
    args.inline_calls = args.inline_calls or (1000 if quick else 3000)
    args.max_minutes = args.max_minutes or (8.0 if quick else 25.0)
    if args.reps < 1 or args.n < 100:
        parser.error("--reps must be >= 1 and --n >= 100")
    return args


def main(argv: list[str] | None = None) -> int:
    global _deadline
    args = parse_args(argv)
    if args.inline_child:
        inline_child(args.inline_child, args.reps, args.inline_calls)
        return 0
    started = time.monotonic()
    _deadline = started + args.max_minutes * 60
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "FJ_BENCH_BROKER_URL": BROKER_URL,
            "FUSION_JOBS_BROKER_URL": BROKER_URL,
        }
    )
    os.environ.pop("FJ_BENCH_DB", None)
    log(
        f"start: {'quick' if args.quick else 'full'} run, N={args.n:,} per drain (django-dramatiq admin "
        f"{args.dd_n:,}), reps={args.reps}, enqueue {args.enqueue_n:,}/client, enqueue_many {args.batch_runs:,} "
        f"runs/size, latency {args.latency_n} samples, inline {args.inline_calls:,} calls; workers {PROCESSES} proc × "
        f"{THREADS} thr; broker {masked(BROKER_URL)}, database {DB} on 127.0.0.1:5432; stops after "
        f"{args.max_minutes:.0f} min; load average {os.getloadavg()[0]:.2f}"
    )

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    logdir = Path(tempfile.mkdtemp(prefix="fj-compare-"))
    reps: list[dict[str, Any]] = []
    try:
        ensure_vhost()
        prepare_database()
        import django

        django.setup()
        purge()
        machine = machine_info()
        log(
            f"machine: {machine['cores']} cores {machine['cpu']}, PostgreSQL {machine.get('postgresql')}, "
            f"RabbitMQ {machine.get('rabbitmq')}; worker logs in {logdir}"
        )
        clients = Clients()
        order = list(CONFIGS)
        for rep in range(args.reps):
            load = os.getloadavg()
            log(f"rep {rep + 1}/{args.reps}: load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
            data: dict[str, Any] = {"load": load, "drain": {}, "latency": {}}
            log(f"rep {rep + 1}/{args.reps}: enqueue from one thread (no workers)")
            data["enqueue"] = phase_enqueue(clients, args)
            e = data["enqueue"]
            log(
                f"rep {rep + 1}/{args.reps}: enqueue runs/s: fusion-jobs {e['fusion_jobs']['rate']:,.0f} "
                f"(p50 {e['fusion_jobs']['p50_ms']:.2f} ms), many100 {e['fusion_jobs_many100']['rate']:,.0f}, "
                f"many1000 {e['fusion_jobs_many1000']['rate']:,.0f}; Dramatiq confirms "
                f"{e['dramatiq_confirm']['rate']:,.0f} / none {e['dramatiq_noconfirm']['rate']:,.0f}; "
                f"dd admin {e['dd_admin']['rate']:,.0f}; Celery {e['celery']['rate']:,.0f}"
            )
            shift = rep % len(order)
            for config in order[shift:] + order[:shift]:
                label = LABELS[config]
                log(f"rep {rep + 1}/{args.reps}: {label}: preload, drain, then enqueue→start latency")
                if config == "fusion_jobs":
                    drain, latency = run_fusion_jobs(clients, args, logdir)
                elif config == "dramatiq":
                    drain, latency = run_dramatiq(clients, args, logdir)
                elif config == "dd_admin":
                    drain, latency = run_dd_admin(clients, args, logdir)
                else:
                    drain, latency = run_celery(config.split("_", 1)[1], clients, args, logdir)
                data["drain"][config] = drain
                data["latency"].update(latency)
                lat_text = ", ".join(
                    f"{key} p50 {value['p50_ms']:.2f} / p99 {value['p99_ms']:.2f} ms"
                    for key, value in latency.items()
                )
                extra = ""
                if "pg_per_run" in drain:
                    extra = f", {drain['pg_per_run']['commits']:.3f} commits/run"
                log(
                    f"rep {rep + 1}/{args.reps}: {label}: drained {drain['n']:,} in {drain['seconds']:.2f} s = "
                    f"{drain['rate']:,.0f} runs/s (machine {100 * drain['busy']:.0f} % busy{extra}); {lat_text}"
                )
            reps.append(data)
        inline = {} if "inline" in args.skip else run_inline_children(args)
        summary = summarize(reps, inline)
        result = {
            "finished_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "duration_s": round(time.monotonic() - started, 1),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "broker": masked(BROKER_URL),
            "database": DB,
            "machine": machine,
            "load_end": os.getloadavg(),
            "summary": summary,
            "reps": reps,
            "inline": inline,
        }
        header, rows = table_rows(summary)
        print()
        print(render_text_table(header, rows))
        print()
        print("Targets (same-run ratios; medians):")
        print(render_targets(summary, markdown=False))
        fj_pg = summary["median"]["pg_per_run.fusion_jobs"]
        loads = ", ".join(f"{r['load'][0]:.1f}" for r in reps)
        print(
            f"fusion-jobs worker: {fmt(fj_pg['commits'], 3)} commits per run; "
            f"load average at rep starts {loads}, at the end {os.getloadavg()[0]:.1f}"
        )
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str))
        log(f"wrote {args.json}")
        if args.chart:
            write_chart(args.chart, summary, reps, machine)
            log(f"wrote {args.chart}")
        if args.write_docs:
            write_docs(DOCS, summary, result, args.chart)
            log(f"wrote {DOCS}")
        log(f"done in {time.monotonic() - started:.0f} s")
        return 0
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    except BenchError as exc:
        log(f"error: {exc}")
        return 1
    finally:
        stop_all_workers()
        with contextlib.suppress(Exception):
            purge(delete=True)
        log("workers stopped, benchmark queues purged and deleted")


if __name__ == "__main__":
    sys.exit(main())
