"""Inline: ``enqueue()`` with jobs disabled (recording on) vs a direct call of the same empty function.

Measured in a child process per database (SQLite in memory, PostgreSQL):
``python -m bench.compare.inline DB REPS CALLS`` prints one RESULT line.
"""

from __future__ import annotations

import json
import sys
import time
import timeit
from typing import Any

import django

from bench.compare.child import RESULT, spawn
from bench.compare.services import child_env, log, pct


def run(reps: int, calls: int) -> dict[str, Any]:
    """The parent's side: one child per database; its per-repetition figures."""
    out = {}
    for db, n in (("sqlite", calls), ("postgres", max(200, calls // 3))):
        log(f"inline: enqueue() with jobs disabled vs a direct call, {db}, {n} calls x {reps} reps")
        env = child_env(FJ_BENCH_DB=db, FUSION_JOBS_BROKER_URL="")
        out[db] = spawn(
            ["-m", "bench.compare.inline", db, str(reps), str(n)], env, f"inline child ({db})", 600
        )
    return out


def main(db: str, reps: int, calls: int) -> None:
    """The child: time enqueue() inline against a direct call; prints one RESULT line."""
    django.setup()
    # Models and tasks need the app registry, ready only now.
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Count

    from bench.app.tasks import inline_noop, plain_noop
    from fusion_jobs import enqueue, is_jobs_enabled
    from fusion_jobs.models import JobRun

    if db == "sqlite":  # fusion-jobs' tables only: some peers' migrations are PostgreSQL's SQL
        call_command("migrate", "fusion_jobs", verbosity=0)
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
        statuses = dict(JobRun.objects.values_list("status").annotate(c=Count("id")))
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
    print(RESULT + json.dumps({"reps": per_rep}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
