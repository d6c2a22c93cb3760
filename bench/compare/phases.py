"""``run_peer()``: the same phases, measured the same way, for every peer.

1. **Enqueue**: one client thread, each call timed, no worker running: ``send`` (and each variant),
   then ``send_batch`` in chunks of 100 and 1000 where the peer has one.
2. **Drain**: N runs put in place (``preload``), then the workers start; throughput = N / (last
   completion - first task-body start), so worker boot is excluded. A completion is the committed
   history row where the peer keeps one (``completions``), else the task body. Verified: exactly N
   bodies ran and, for a tracked peer, exactly N rows succeeded (no loss, no duplicate).
3. **Enqueue to start**: with the same workers idle, runs sent one at a time, the next 10 ms after
   the previous one started; latency = task-body ``time.time()`` - ``time.time()`` before the call.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import sidechannel
from bench.compare.peer import Peer
from bench.compare.services import (
    BenchError,
    check_deadline,
    child_env,
    pct,
    purge,
    queue_depth,
    sql,
    truncate,
    wait_until,
    write_transactions,
)
from bench.compare.workers import Worker, cpu_snapshot, cpu_spent, machine_busy

BATCH_SIZES = (100, 1000)
LATENCY_GAP = 0.010
LATENCY_WARMUP = 5


def clear(peer: Peer) -> None:
    """Delete the peer's rows and empty its queue."""
    if peer.settle is not None:
        peer.settle()
    if peer.tables:
        truncate(*peer.tables)
    if peer.queue:
        purge([peer.queue])


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


def preload(peer: Peer, n: int) -> float:
    """Put n drain runs (phase ``d``) in place; returns runs/s."""
    t0 = time.perf_counter()
    if peer.preload is not None:
        peer.preload(n)
    elif peer.send_batch is not None:
        for start in range(0, n, 1000):
            peer.send_batch("d", min(1000, n - start))
    else:
        for index in range(n):
            if index % 1000 == 0:
                check_deadline(f"{peer.label} preload")
            peer.send("d")
    rate = n / (time.perf_counter() - t0)
    if peer.queue:
        wait_until(lambda: queue_depth(peer.queue) >= n, 60, f"{n} messages in {peer.queue}", interval=0.1)
    return rate


class Workers:
    """The peer's worker commands, started together, checked and stopped together."""

    def __init__(self, peer: Peer, tsdir: str, logdir: Path) -> None:
        env = child_env(peer.database, FJ_BENCH_TS_DIR=tsdir, **peer.worker_env)
        self.name = peer.label
        self.workers = [
            Worker(f"{peer.key}-{index}", [sys.executable, *argv], env, logdir)
            for index, argv in enumerate(peer.workers)
        ]

    def __enter__(self) -> Workers:
        for worker in self.workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for worker in self.workers:
            worker.stop()

    def check(self) -> None:
        for worker in self.workers:
            worker.check()

    def tail(self) -> str:
        return "\n".join(worker.tail() for worker in self.workers)

    @property
    def sessions(self) -> list[int]:
        return [worker.session for worker in self.workers]


def snapshot(peer: Peer, workers: Workers) -> dict[str, Any]:
    """Machine busy time, CPU per component and write transactions so far (for the drain's deltas)."""
    return {
        "busy": machine_busy(),
        "cpu": cpu_snapshot(workers.sessions),
        "commits": write_transactions() if peer.database else None,
    }


def wait_bodies(peer: Peer, workers: Workers, tsdir: str, n: int) -> dict[str, Any]:
    """Wait until n bodies started; returns the snapshot taken when the first one was seen."""
    timeout = 60 + n / peer.min_rate
    end = time.monotonic() + timeout
    first: dict[str, Any] = {}
    while True:
        done = sidechannel.count(tsdir, "d")
        if done and not first:
            first = snapshot(peer, workers)
        if done >= n:
            return first
        workers.check()
        check_deadline(f"{workers.name} drain")
        if time.monotonic() > end:
            raise BenchError(
                f"{workers.name}: only {done}/{n} runs started after {timeout:.0f} s\n{workers.tail()}"
            )
        time.sleep(0.02)


def drain(peer: Peer, workers: Workers, tsdir: str, n: int) -> dict[str, Any]:
    first = wait_bodies(peer, workers, tsdir, n)
    last_done = None
    if peer.history_sql is not None:
        query = peer.history_sql

        def all_succeeded() -> tuple[int, float] | None:
            succeeded, last = sql(query)[0]
            return (int(succeeded), float(last)) if succeeded >= n else None

        succeeded, last_done = wait_until(all_succeeded, 60, f"{n} succeeded rows", 0.02)
        if succeeded != n:
            raise BenchError(f"{peer.label}: {succeeded} succeeded rows for {n} runs (duplicates?)")
    final = snapshot(peer, workers)
    bodies = sidechannel.read(tsdir, "d")
    if len(bodies) != n:
        raise BenchError(f"{peer.label}: {len(bodies)} task bodies ran for {n} runs")
    start, end = min(bodies), max(max(bodies), last_done or 0.0)
    (busy0, total0), (busy1, total1) = first["busy"], final["busy"]
    return {
        "rate": n / max(1e-6, end - start),
        "n": n,
        "seconds": end - start,
        "busy": (busy1 - busy0) / max(1.0, total1 - total0),
        "cpu_us_per_run": {k: v / n * 1e6 for k, v in cpu_spent(first["cpu"], final["cpu"]).items()},
        "commits_per_run": None if first["commits"] is None else (final["commits"] - first["commits"]) / n,
        "verified": f"{n} bodies" + (f", {n} succeeded rows" if peer.history_sql else ""),
    }


def latency(
    send: Callable[[str], object], workers: Workers, tsdir: str, phase: str, n: int
) -> dict[str, float]:
    """Send n runs one at a time (after a few warm-up sends), each once the previous one has started."""
    sent = []
    for index in range(LATENCY_WARMUP + n):
        t0 = time.time()
        send(phase)
        end = time.monotonic() + 10
        while sidechannel.count(tsdir, phase) <= index:
            if time.monotonic() > end:
                workers.check()
                raise BenchError(f"{workers.name}: run {index} of {phase} did not start within 10 s")
            time.sleep(0.0003)
        sent.append(t0)
        time.sleep(LATENCY_GAP)
    started = sidechannel.read(tsdir, phase)
    if len(started) != len(sent):
        raise BenchError(f"{workers.name}: {len(started)} task starts for {len(sent)} sends")
    values = [(body - t0) * 1000 for body, t0 in zip(started, sent, strict=True)][LATENCY_WARMUP:]
    return {"p50_ms": pct(values, 50), "p99_ms": pct(values, 99), "samples": n}


def run_peer(peer: Peer, args: Any, logdir: Path) -> dict[str, dict[str, Any]]:
    """Every phase for one peer; results keyed by the peer's key and each variant's key."""
    out: dict[str, dict[str, Any]] = {peer.key: {}}
    mine = out[peer.key]
    clear(peer)
    mine["enqueue"] = time_calls(lambda: peer.send("e"), args.enqueue_n)
    for variant in peer.variants:
        out[variant.key] = {"enqueue": time_calls(lambda v=variant: v.send("e"), args.enqueue_n)}
    clear(peer)
    if peer.send_batch is not None:
        batch = peer.send_batch
        mine["batch"] = {}
        for size in BATCH_SIZES:
            mine["batch"][str(size)] = time_calls(
                lambda s=size: batch("e", s), max(2, args.batch_runs // size), per_call=size, warmup=1
            )
            clear(peer)
    n = args.dd_n if peer.small_n else args.n
    preload_rate = preload(peer, n)
    tsdir = tempfile.mkdtemp(prefix=f"{peer.key}-", dir=logdir)
    samples = min(args.latency_n, peer.latency_samples or args.latency_n)
    try:
        with Workers(peer, tsdir, logdir) as workers:
            mine["drain"] = {**drain(peer, workers, tsdir, n), "preload_rate": preload_rate}
            mine["latency"] = latency(peer.send, workers, tsdir, "lat", samples)
            for variant in peer.variants:
                out[variant.key]["latency"] = latency(
                    variant.send, workers, tsdir, f"lat-{variant.key}", samples
                )
    finally:
        clear(peer)
    return out
