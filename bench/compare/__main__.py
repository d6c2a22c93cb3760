"""fusion-jobs side by side with the Django job systems that keep history, and with bare brokers, in one run.

    .venv/bin/python -m bench.compare [--quick] [--n N] [--reps R] [--chart bench/results/compare.png]
                                      [--write-docs] [--max-minutes M] [--peers KEY ...]

Everything runs on this machine's loopback services: RabbitMQ vhost ``fj_perf`` (guest/guest) and
one PostgreSQL server, each peer with history on its own database (created and migrated here).
Each repetition runs every peer once, in rotating order, each in its own child process
(``bench/compare/child.py``) going through the same phases (``bench/compare/phases.py``); figures
are medians over the repetitions and a ratio is the median of the per-repetition ratios. The run
stops by itself (``--max-minutes``); Ctrl-C cleans up too. The peers and their configurations are
declared in ``bench/compare/peers/``; the latest results are in ``docs/benchmarks.md``.
"""

# ruff: noqa: RUF001  (the multiplication sign is meant)
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import django

from bench.compare import inline, report, summary
from bench.compare.child import spawn
from bench.compare.services import (
    BROKER_URL,
    DB,
    PROCESSES,
    ROOT,
    THREADS,
    BenchError,
    child_env,
    ensure_vhost,
    log,
    prepare_databases,
    purge,
    rabbitmq_version,
    server_settings,
    set_deadline,
)

RESULTS = ROOT / "bench" / "results" / "compare.json"
DOCS = ROOT / "docs" / "benchmarks.md"
VERSIONS = (
    "Django",
    "dramatiq",
    "django-dramatiq",
    "procrastinate",
    "celery",
    "django-celery-results",
    "django-tasks-db",
    "django-q2",
    "psycopg",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="small N and fewer samples (~6 min on an idle machine)"
    )
    parser.add_argument("--n", type=int, help="runs per drain, every peer (default 10000, --quick 2000)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument(
        "--dd-n", type=int, help="runs per django-dramatiq admin drain (default min(N, 3000))"
    )
    parser.add_argument(
        "--enqueue-n", type=int, help="single enqueues per client (default 2000, --quick 500)"
    )
    parser.add_argument("--batch-runs", type=int, help="runs per batch size (default 5000, --quick 2000)")
    parser.add_argument("--latency-n", type=int, help="enqueue→start samples (default 200, --quick 50)")
    parser.add_argument(
        "--inline-calls", type=int, help="inline enqueue() calls per rep (default 3000, --quick 1000)"
    )
    parser.add_argument("--chart", type=Path, help="write a PNG chart here (e.g. bench/results/compare.png)")
    parser.add_argument("--write-docs", action="store_true", help=f"write/update {DOCS.relative_to(ROOT)}")
    parser.add_argument(
        "--json", type=Path, default=RESULTS, help=f"JSON output (default {RESULTS.relative_to(ROOT)})"
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        help="stop after this long, keeping the complete repetitions (default 20, --quick 10)",
    )
    parser.add_argument(
        "--peers", nargs="+", metavar="KEY", help="only these peers (fusion_jobs always runs)"
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=["inline"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    args.n = args.n or (2000 if quick else 10000)
    args.dd_n = args.dd_n or min(args.n, 1000 if quick else 3000)
    args.enqueue_n = args.enqueue_n or (500 if quick else 2000)
    args.batch_runs = args.batch_runs or (2000 if quick else 5000)
    args.latency_n = args.latency_n or (50 if quick else 200)
    args.inline_calls = args.inline_calls or (1000 if quick else 3000)
    args.max_minutes = args.max_minutes or (10.0 if quick else 20.0)
    if args.reps < 1 or args.n < 100:
        parser.error("--reps must be >= 1 and --n >= 100")
    return args


def machine_info() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    mem_gib = None
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as handle:
        mem_gib = round(int(handle.readline().split()[1]) / 1024 / 1024, 1)
    versions = {}
    for package in VERSIONS:
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
        info.update(server_settings())
    with contextlib.suppress(Exception):
        info["rabbitmq"] = rabbitmq_version()
    return info


def run_rep(
    rep: int, args: argparse.Namespace, peers: list[Any], logdir: Path, deadline: float
) -> dict[str, Any]:
    """Every peer once, the order rotated by the repetition number, each in its own child process."""
    load = os.getloadavg()
    log(f"rep {rep + 1}/{args.reps}: load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    data: dict[str, Any] = {"load": load, "results": {}}
    shift = rep % len(peers)
    child_args = {
        **{k: getattr(args, k) for k in ("n", "dd_n", "enqueue_n", "batch_runs", "latency_n")},
        "deadline": deadline,
        "logdir": str(logdir),
    }
    for peer in peers[shift:] + peers[:shift]:
        log(f"rep {rep + 1}/{args.reps}: {peer.label}: enqueue, preload, drain, enqueue→start")
        argv = ["-m", "bench.compare.child", peer.key, json.dumps(child_args)]
        result = spawn(argv, child_env(peer.database), peer.label, max(60.0, deadline - time.time() + 60))
        data["results"].update(result)
        mine = result[peer.key]
        drain = mine["drain"]
        cpu = drain["cpu_us_per_run"]
        log(
            f"rep {rep + 1}/{args.reps}: {peer.label}: enqueue {mine['enqueue']['rate']:,.0f}/s "
            f"(p50 {mine['enqueue']['p50_ms']:.2f} ms)"
            + (f", batch(1000) {mine['batch']['1000']['rate']:,.0f}/s" if "batch" in mine else "")
            + f"; drained {drain['n']:,} in {drain['seconds']:.2f} s = {drain['rate']:,.0f}/s ({drain['verified']}; "
            f"CPU µs/run worker {cpu['worker']:.0f}, PostgreSQL {cpu['postgres']:.0f}, RabbitMQ {cpu['rabbitmq']:.0f}); "
            f"enqueue→start p50 {mine['latency']['p50_ms']:.2f} ms"
        )
    return data


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    deadline = time.time() + args.max_minutes * 60
    set_deadline(deadline)
    os.environ.update(child_env())
    log(
        f"start: {'quick' if args.quick else 'full'} run, N={args.n:,} per drain (django-dramatiq admin "
        f"{args.dd_n:,}), reps={args.reps}, enqueue {args.enqueue_n:,}/client, batches {args.batch_runs:,} runs/size, "
        f"latency {args.latency_n} samples; workers {PROCESSES} proc × {THREADS} thr; stops after "
        f"{args.max_minutes:.0f} min; load average {os.getloadavg()[0]:.2f}"
    )

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    logdir = Path(tempfile.mkdtemp(prefix="fj-compare-"))
    queues: list[str] = []
    try:
        ensure_vhost()
        django.setup()
        # The peers import their task modules and models, which need the app registry (django.setup()).
        from bench.compare.peers import ALL

        peers = [p for p in ALL if not args.peers or p.key in args.peers or p.key == summary.FJ]
        queues = [p.queue for p in peers if p.queue]
        prepare_databases(list(dict.fromkeys([DB, *(p.database for p in peers if p.database)])))
        purge(queues)
        machine = machine_info()
        log(
            f"machine: {machine['cores']} cores {machine['cpu']}; peers: {', '.join(p.key for p in peers)}; logs in {logdir}"
        )
        reps: list[dict[str, Any]] = []
        for rep in range(args.reps):
            try:
                reps.append(run_rep(rep, args, peers, logdir, deadline))
            except BenchError as exc:
                if not reps:
                    raise
                log(f"rep {rep + 1} abandoned ({exc}); reporting the {len(reps)} complete repetition(s)")
                break
        inline_results = {}
        if "inline" not in args.skip and time.time() < deadline:
            try:
                inline_results = inline.run(args.reps, args.inline_calls)
            except BenchError as exc:  # the peers' figures are still worth reporting
                log(f"inline skipped: {exc}")
        m = summary.summarize(reps, inline_results, peers)
        result = {
            "finished_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "duration_s": round(time.monotonic() - started, 1),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "broker": BROKER_URL.replace("guest:guest", "guest:***"),
            "machine": machine,
            "load_end": os.getloadavg(),
            "summary": m,
            "reps": reps,
            "inline": inline_results,
        }
        print()
        print(report.text(m, result, peers))
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str))
        log(f"wrote {args.json}")
        if args.chart:
            from bench.compare import chart  # matplotlib is slow to import; only for --chart

            chart.write(args.chart, m, peers, len(reps), machine)
            log(f"wrote {args.chart}")
        if args.write_docs:
            report.write_docs(DOCS, m, result, peers, args.chart)
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
        with contextlib.suppress(Exception):
            purge(queues, delete=True)
        log("benchmark queues purged and deleted")


if __name__ == "__main__":
    sys.exit(main())
