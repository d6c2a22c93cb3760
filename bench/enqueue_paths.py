"""Ways to enqueue, measured side by side on this machine: which path makes ``enqueue()`` fastest.

    .venv/bin/python bench/enqueue_paths.py [--reps 3] [--n 2000] [--batches 20] [--base DIR]
                                            [--latency 100] [--ways a,b,...]

Each way runs in a child process of its own (fresh imports, one client thread, no worker
running), every repetition in rotating order so all ways see the same machine weather; figures
are medians over the repetitions. ``--base DIR`` is a checkout of the code before this change
(default ``/tmp/h8-base``: ``git archive`` of it), for the "today" ways. Services: PostgreSQL
database ``fj_enq`` on loopback (created and migrated, procrastinate's tables included) and
RabbitMQ vhost ``$FJ_ENQ_VHOST`` (default ``fj_h8``).

Single-run ways (``enqueue()`` of one no-op run, outside a transaction, each call timed):

* ``today``: the code before: INSERT committed without waiting for the disk, a publish that waits
  for RabbitMQ's confirm, then the published mark.
* ``sync_async``: ``enqueue()`` of this tree: an INSERT whose commit waits for the disk, the
  message handed to the confirming publisher (``backends/confirms.py``) without waiting for its
  confirm, confirmed runs marked published in batches by a thread.
* ``handoff``: the same INSERT, then a queue to a background thread that publishes what has
  gathered with confirms on a blocking channel and marks it.
* ``async_confirmed``: today's durability (async INSERT, confirmed publish) on a bare confirm
  channel, without the pool or the published mark (marked in batches by the marking thread).
* ``procrastinate``: procrastinate's Django contrib ``defer``.

The ways other than ``today`` and ``new`` are prototypes, in ``bench/enqueue_prototypes.py``.

Batch ways (chunks of ``--chunk``, 1,000 by default): ``many_today``, ``many_new``
(``enqueue_many`` of this tree) and ``procrastinate_batch`` (``batch_defer``). A fusion-jobs way's
time includes waiting, at the end, for every message's confirm.

``--latency N`` also measures enqueue->start (``today`` and this tree): N runs one at a time to an
idle ``rundramatiq`` worker, 10 ms apart; latency = the task body's ``time.time()`` minus the
one taken just before ``enqueue()``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DB = os.environ.get("FJ_ENQ_DB", "fj_enq")
VHOST = os.environ.get("FJ_ENQ_VHOST", "fj_h8")
BROKER_URL = f"amqp://guest:guest@127.0.0.1:5672/{VHOST}"
QUEUE = "bench_fj"
SINGLE = ("today", "new", "sync_handoff", "handoff", "async_confirmed", "row_only")
BATCH = ("many_today", "many_new")
TODAY = ("today", "many_today", "latency_today")


# --- the child: one way, measured in a fresh process --------------------------------------------


def setup_django() -> None:
    import django
    from django.conf import settings

    import bench.settings as base

    values = {name: getattr(base, name) for name in dir(base) if name.isupper()}
    if "procrastinate.contrib.django" not in values["INSTALLED_APPS"]:
        values["INSTALLED_APPS"] = [*values["INSTALLED_APPS"], "procrastinate.contrib.django"]
    values["DATABASES"]["default"]["NAME"] = DB
    values["LOGGING"] = {"version": 1, "disable_existing_loggers": False}
    settings.configure(**values)
    django.setup()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def sql(query: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(query)


def truncate() -> None:
    sql("TRUNCATE fusion_jobs_jobrun CASCADE")
    sql("TRUNCATE procrastinate_jobs CASCADE")


def purge() -> None:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(BROKER_URL))
    try:
        for name in (QUEUE, f"{QUEUE}.DQ", f"{QUEUE}.XQ", "bench_proc"):
            channel = connection.channel()
            with contextlib.suppress(pika.exceptions.ChannelClosedByBroker):
                channel.queue_purge(name)
    finally:
        connection.close()


def procrastinate_task() -> Any:
    from procrastinate.contrib.django import app

    @app.task(queue="bench_proc", name="bench_proc_noop")
    def noop(p: str = "e") -> None:
        """The procrastinate peer's no-op."""

    return noop


def paired(
    fj: Callable[[], Any],
    proc: Callable[[], Any],
    calls: int,
    block: int,
    per_call: int,
    settle: Callable[[], Any],
) -> dict[str, Any]:
    """Time ``fj`` and procrastinate's ``proc`` in alternating blocks of ``block`` calls.

    Both see the same machine weather, so their ratio holds on a machine shared with other work.
    ``settle`` (waiting for fusion-jobs' confirms and marks) ends each fusion-jobs block, in its time.
    """
    for call in (fj, proc):
        for _ in range(max(1, 20 // per_call)):
            call()
    settle()
    durations: dict[str, list[float]] = {"fj": [], "proc": []}
    totals = {"fj": 0.0, "proc": 0.0}
    for index in range(max(1, calls // block)):
        order = [("fj", fj), ("proc", proc)]
        for name, call in order if index % 2 == 0 else order[::-1]:
            started = time.perf_counter()
            for _ in range(block):
                t0 = time.perf_counter()
                call()
                durations[name].append(time.perf_counter() - t0)
            if name == "fj":
                settle()
            totals[name] += time.perf_counter() - started
    out: dict[str, Any] = {}
    for name in ("fj", "proc"):
        out[name] = {
            "rate": len(durations[name]) * per_call / totals[name],
            "p50_ms": pct(durations[name], 50) * 1000,
            "p99_ms": pct(durations[name], 99) * 1000,
        }
    out["ratio"] = out["fj"]["rate"] / out["proc"]["rate"]
    return out


def child(way: str, args: argparse.Namespace) -> dict[str, Any]:
    setup_django()
    truncate()
    purge()
    if way.startswith("latency"):
        return latency(args)
    task = procrastinate_task()

    from bench.app.tasks import noop
    from fusion_jobs import enqueue, enqueue_many

    if way in BATCH:
        batch = [{"p": "e"}] * args.chunk
        return paired(
            lambda: enqueue_many(noop, batch),
            lambda: task.batch_defer(*batch),
            args.batches,
            1,
            args.chunk,
            flush_confirms,
        )
    finish: Callable[[], None] = lambda: None  # noqa: E731
    if way in ("today", "new"):
        call: Callable[[], Any] = lambda: enqueue(noop, p="e")  # noqa: E731
    else:
        # Imported here: only the ways that run this tree use it, and the "today" ways run in a
        # checkout of the code before, which has no such module.
        from bench.enqueue_prototypes import Prototypes, async_confirmed_way, handoff_way, proto_way

        protos = Prototypes(BROKER_URL, QUEUE)
        if way == "row_only":
            call = lambda: protos.row(True)  # noqa: E731
        else:
            build = {
                "handoff": handoff_way,
                "async_confirmed": async_confirmed_way,
                "sync_handoff": proto_way,
            }
            call, finish = build[way](protos)
    result = paired(call, lambda: task.defer(p="e"), args.n, args.block, 1, flush_confirms)
    finish()
    return result


def flush_confirms() -> float:
    """Wait for this tree's confirms and published marks; returns the time it was done."""
    try:
        from fusion_jobs.backends.broker import flush_publishes
        from fusion_jobs.marking import flush_marks
    except ImportError:  # the code before: every publish was confirmed and marked when it returned
        return time.perf_counter()
    flush_publishes(30)
    flush_marks(30)
    return time.perf_counter()


def latency(args: argparse.Namespace) -> dict[str, Any]:
    from bench.app.tasks import noop
    from bench.sidechannel import count, read
    from fusion_jobs import enqueue

    tsdir = tempfile.mkdtemp(prefix="h8-lat-")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "FJ_BENCH_DB_NAME": DB,
        "FJ_BENCH_BROKER_URL": BROKER_URL,
        "FUSION_JOBS_BROKER_URL": BROKER_URL,
        "FJ_BENCH_TS_DIR": tsdir,
        "PYTHONUNBUFFERED": "1",
    }
    log = open(os.path.join(tsdir, "worker.log"), "wb")  # noqa: SIM115
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "rundramatiq", "-p", "1", "-t", "8", "-Q", QUEUE],
        cwd=os.getcwd(),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        sent = []
        for index in range(args.latency + 5):
            t0 = time.time()
            enqueue(noop, p="lat")
            end = time.monotonic() + 60
            while count(tsdir, "lat") <= index:
                if time.monotonic() > end or worker.poll() is not None:
                    raise RuntimeError(f"run {index} did not start; see {tsdir}/worker.log")
                time.sleep(0.0002)
            sent.append(t0)
            time.sleep(0.010)
        started = read(tsdir, "lat")
        lat = [(b - s) * 1000 for b, s in zip(started[5:], sent[5:], strict=True)]
        return {"p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(30)
        log.close()


# --- the parent: every way, rotating, medians ------------------------------------------------------


def prepare(base: Path) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB]).fetchone():
            conn.execute(f"CREATE DATABASE {DB}")
    code = (
        "import sys; sys.argv=['bench','migrate','-v0'];"
        "from bench.enqueue_paths import setup_django; setup_django();"
        "from django.core.management import execute_from_command_line; execute_from_command_line(sys.argv)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=child_env(ROOT), check=True, timeout=300)
    if not (base / "fusion_jobs").is_dir():
        base.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", args_base_commit()], cwd=ROOT, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)


def args_base_commit() -> str:
    """The code before this change: the enqueue path with a confirmed publish (7b4ea4b)."""
    return os.environ.get("FJ_ENQ_BASE_COMMIT", "7b4ea4b")


def child_env(tree: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "FUSION_JOBS_BROKER_URL": BROKER_URL}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def run_child(way: str, args: argparse.Namespace) -> dict[str, Any]:
    tree = Path(args.base) if way in TODAY else ROOT
    script = ROOT / "bench" / "enqueue_paths.py"
    argv = [sys.executable, str(script), "--child", way, "--n", str(args.n), "--batches", str(args.batches)]
    argv += ["--chunk", str(args.chunk), "--latency", str(args.latency), "--block", str(args.block)]
    done = subprocess.run(argv, cwd=tree, env=child_env(tree), capture_output=True, text=True, timeout=900)
    if done.returncode:
        raise RuntimeError(f"{way} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--block", type=int, default=50)
    parser.add_argument("--latency", type=int, default=0)
    parser.add_argument("--base", default="/tmp/h8-base")
    parser.add_argument("--ways", default=",".join(SINGLE + BATCH))
    parser.add_argument("--child", default="")
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, os.getcwd())
        print(json.dumps(child(args.child, args)))
        return 0
    prepare(Path(args.base))
    ways = args.ways.split(",")
    if args.latency:
        ways += ["latency_today", "latency_new"]
    results: dict[str, list[dict[str, Any]]] = {way: [] for way in ways}
    for rep in range(args.reps):
        order = ways[rep % len(ways) :] + ways[: rep % len(ways)]
        for way in order:
            results[way].append(run_child(way, args))
            print(f"rep {rep + 1} {way}: {results[way][-1]}", file=sys.stderr, flush=True)
    print(f"\nmedians of {args.reps} run(s), load {os.getloadavg()[0]:.1f}")
    print(
        f"{'way':<18} {'runs/s':>8} {'p50 ms':>7} {'p99 ms':>7} | {'procr./s':>8} {'p50 ms':>7} {'p99 ms':>7} | {'ratio':>5}"
    )
    for way in ways:
        reps = results[way]
        if "fj" not in reps[0]:
            p50, p99 = (statistics.median(r[k] for r in reps) for k in ("p50_ms", "p99_ms"))
            print(f"{way:<18} {'':>8} {p50:>7.3f} {p99:>7.3f} (enqueue->start)")
            continue
        row = [
            statistics.median(r[side][k] for r in reps)
            for side in ("fj", "proc")
            for k in ("rate", "p50_ms", "p99_ms")
        ]
        ratio = statistics.median(r["ratio"] for r in reps)
        print(
            f"{way:<18} {row[0]:>8,.0f} {row[1]:>7.3f} {row[2]:>7.3f} | {row[3]:>8,.0f} {row[4]:>7.3f} {row[5]:>7.3f} | {ratio:>5.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
