"""Where a fusion-jobs worker spends its time draining no-op runs: py-spy on the worker processes.

    .venv/bin/python bench/profile_fj.py [--n 5000] [-p 2] [-t 8] [--rate 200] [--out /tmp/fj-profile]

Preloads N runs with ``enqueue_many`` (as ``python -m bench.compare`` does), starts ``manage.py
rundramatiq``, attaches ``py-spy record`` (raw collapsed stacks, idle threads included) to each
Dramatiq worker process for the drain, and prints: the drain rate, PostgreSQL commits/updates per
run, the writer's batch sizes, and the top functions by on-CPU samples (self and inclusive) over
the worker threads and the writer thread. Uses the same database, vhost and queue as ``bench.compare``.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.app.tasks import QUEUE  # noqa: E402
from bench.compare.services import (  # noqa: E402
    BROKER_URL,
    DB,
    child_env,
    ensure_vhost,
    prepare_databases,
    purge,
    queue_depth,
    sql,
    truncate,
    wait_until,
    write_transactions,
)
from bench.compare.workers import Worker, cpu_snapshot, cpu_spent  # noqa: E402
from bench.sidechannel import count, read  # noqa: E402


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def leaves(pid: int, count: int) -> list[int] | None:
    """``count`` processes below ``pid`` that have no children of their own, once there are as many."""
    found, todo = [], children(pid)
    while todo:
        below = children(todo[0])
        found += [] if below else [todo[0]]
        todo = todo[1:] + below
    return found[:count] if len(found) >= count else None


def summarize_raw(paths: list[Path], top: int) -> str:
    """Aggregate py-spy raw output (``frame;frame;... count``) by thread role and function."""
    self_counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    incl_counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    totals: collections.Counter[str] = collections.Counter()
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack:
                continue
            count = int(count_text)
            frames = stack.split(";")
            thread = frames[0]
            text = ";".join(frames)
            if "fusion-jobs-writer" in thread or "BatchWriter._loop" in text:
                role = "writer thread"
            elif (
                "Worker(" in text
                or "_WorkerThread" in text
                or ("worker.py" in text and "process_message" in text)
            ):
                role = "worker threads"
            elif "_ConsumerThread" in text or "ConsumerThread" in text:
                role = "consumer threads"
            else:
                role = "other"
            totals[role] += count
            leaf = frames[-1]
            self_counts[role][leaf] += count
            for frame in set(frames[1:]):
                incl_counts[role][frame] += count
    lines = []
    for role in ("worker threads", "writer thread", "consumer threads", "other"):
        if not totals[role]:
            continue
        lines.append(f"\n== {role}: {totals[role]} samples ==")
        lines.append("  self:")
        for frame, count in self_counts[role].most_common(top):
            lines.append(f"    {100 * count / totals[role]:5.1f}%  {frame}")
        lines.append("  inclusive:")
        for frame, count in incl_counts[role].most_common(top + 10):
            lines.append(f"    {100 * count / totals[role]:5.1f}%  {frame}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("-p", type=int, default=2)
    parser.add_argument("-t", type=int, default=8)
    parser.add_argument("--prefetch", type=int, help="default: twice the threads, as bench.compare")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, default=Path("/tmp/fj-profile"))
    parser.add_argument("--no-spy", action="store_true", help="just drain, no profiler attached")
    parser.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL")
    args = parser.parse_args()
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "FJ_BENCH_BROKER_URL": BROKER_URL,
            "FUSION_JOBS_BROKER_URL": BROKER_URL,
        }
    )
    args.out.mkdir(parents=True, exist_ok=True)
    ensure_vhost()
    prepare_databases([DB])
    import django

    django.setup()
    from bench.app.tasks import noop
    from fusion_jobs import enqueue_many

    truncate("fusion_jobs_jobrun")
    purge([QUEUE])
    for start in range(0, args.n, 1000):
        enqueue_many(noop, [{"p": "d"}] * min(1000, args.n - start))
    wait_until(lambda: queue_depth(QUEUE) >= args.n, 60, f"{args.n} messages in {QUEUE}", interval=0.1)
    tsdir = tempfile.mkdtemp(prefix="ts-", dir=args.out)
    before = write_transactions()
    worker = Worker(
        "fusion-jobs",
        [
            sys.executable,
            "manage.py",
            "rundramatiq",
            "-p",
            str(args.p),
            "-t",
            str(args.t),
            "-Q",
            QUEUE,
            "--prefetch",
            str(args.prefetch or 2 * args.t),
        ],
        child_env(FJ_BENCH_TS_DIR=tsdir),
        args.out,
    ).start()
    spies: list[subprocess.Popen[bytes]] = []
    raws: list[Path] = []
    try:
        assert worker.proc is not None
        # the Dramatiq worker processes: the leaves of the process tree below rundramatiq
        procs = wait_until(lambda: leaves(worker.proc.pid, args.p), 60, "worker processes", interval=0.05)
        if not args.no_spy:
            for pid in procs:
                raw = args.out / f"spy-{pid}.txt"
                raws.append(raw)
                spies.append(
                    subprocess.Popen(
                        [
                            str(ROOT / ".venv" / "bin" / "py-spy"),
                            "record",
                            "--pid",
                            str(pid),
                            "--rate",
                            str(args.rate),
                            "--format",
                            "raw",
                            "--threads",
                            "--nonblocking",
                            *(["--gil"] if args.gil else []),
                            "--output",
                            str(raw),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
        wait_until(lambda: count(tsdir, "d") >= 50, 120, "the first runs", interval=0.005)
        first_done = count(tsdir, "d")
        cpu0 = cpu_snapshot([worker.session])
        wait_until(lambda: count(tsdir, "d") >= args.n, 600, "every run to start", interval=0.02)
        cpu1 = cpu_snapshot([worker.session])
        wait_until(
            lambda: sql("SELECT count(*) FROM fusion_jobs_jobrun WHERE status = 'succeeded'")[0][0] >= args.n,
            60,
            "succeeded rows",
        )
        time.sleep(1.1)
        after = write_transactions()
        last = sql("SELECT max(finished_at) FROM fusion_jobs_jobrun")[0][0].timestamp()
        bodies = read(tsdir, "d")
        rate = args.n / (last - min(bodies))
        print(
            f"drain: {args.n} runs in {last - min(bodies):.2f} s = {rate:,.0f} runs/s (-p {args.p} -t {args.t})"
        )
        commits = (after - before) / args.n
        print(f"per run: {commits:.3f} PostgreSQL commits")
        print(
            "CPU ms per run (from the 50th run on): "
            + ", ".join(
                f"{k} {1000 * v / (args.n - first_done):.3f}" for k, v in cpu_spent(cpu0, cpu1).items()
            )
        )
        print(f"=> about {2 / max(commits, 1e-9):.1f} transitions (start/end) per writer commit")
    finally:
        for spy in spies:
            spy.send_signal(2)
        for spy in spies:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
        worker.stop()
        purge([QUEUE], delete=True)
    if raws:
        print(summarize_raw(raws, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
