"""Admin pages on a million runs: the run list, a filtered list and the dashboard, timed through Django.

The dashboard's hour, day and week views include its SVG charts, read from the rollup
(``fusion_jobs.rollup``), which the bench brings up to date first (a backfill of the whole seed
the first time, timed and reported) as the ``fusion-jobs-rollup`` cron would.

Seeds ``--rows`` JobRun rows (default 1,000,000) into its own PostgreSQL database
``fj_bench_admin`` with server-side ``INSERT ... SELECT generate_series`` in chunks, then times
each page (median of ``--repeat`` requests after one warm-up) with the Django test client,
logged in as a superuser, and writes ``bench/results/admin_scale.json``. Target: every page
under 300 ms.

    .venv/bin/python bench/admin_scale.py [--rows 1000000] [--repeat 7] [--reseed]

The seed is kept between runs (``--reseed`` rebuilds it); only ``fj_bench_admin`` is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DB = "fj_bench_admin"
TARGET_MS = 300.0
RESULTS = ROOT / "bench" / "results" / "admin_scale.json"
CHUNK = 100_000
TRACEBACK = (
    "Traceback (most recent call last):\n"
    + '  File "/srv/app/tasks.py", line 120, in process\n    result = step(document)\n' * 12
    + "RuntimeError: extraction failed on page 12"
)


def log(message: str) -> None:
    print(f"[admin-bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def ensure_database() -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB]).fetchone()
        if not exists:
            log(f"creating database {DB}")
            conn.execute(f"CREATE DATABASE {DB}")


def setup_django() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "example.settings"
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DB}"
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret")  # none with DEBUG off
    os.environ.setdefault("DJANGO_HTTPS", "0")  # the test client speaks plain HTTP
    os.environ.pop("FUSION_JOBS_BROKER_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    for app in ("contenttypes", "auth", "admin", "sessions", "fusion_jobs"):
        call_command("migrate", app, verbosity=0)


def seed(rows: int, reseed: bool) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = 'fusion_jobs_jobrun'::regclass")
        estimate = cursor.fetchone()[0]
        if not reseed and estimate is not None and abs(estimate - rows) < rows * 0.05:
            log(f"keeping the existing seed (~{estimate:,} rows; --reseed rebuilds it)")
            return
        log(f"seeding {rows:,} runs over the last 14 days, {CHUNK:,} per statement")
        cursor.execute("TRUNCATE fusion_jobs_jobrun CASCADE")
        cursor.execute("TRUNCATE fusion_jobs_runrollup, fusion_jobs_rollupstate")
    started = time.monotonic()
    for low in range(0, rows, CHUNK):
        high = min(rows, low + CHUNK) - 1
        with connection.cursor() as cursor:
            cursor.execute(SEED_SQL, {"low": low, "high": high, "rows": rows, "traceback": TRACEBACK})
        done = high + 1
        rate = done / (time.monotonic() - started)
        log(f"  {done:>9,} / {rows:,} rows ({rate:,.0f} rows/s)")
    with connection.cursor() as cursor:
        # The newest runs are the live ones: a few queued, running and retrying.
        cursor.execute(
            """
            UPDATE fusion_jobs_jobrun SET
                status = (ARRAY['queued', 'running', 'retrying'])[1 + abs(hashtext(id::text)) % 3],
                finished_at = NULL, result = NULL
            WHERE id IN (SELECT id FROM fusion_jobs_jobrun ORDER BY enqueued_at DESC LIMIT 300)
            """
        )
    import psycopg

    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={DB}", autocommit=True) as conn:
        log("VACUUM ANALYZE")
        conn.execute("VACUUM ANALYZE fusion_jobs_jobrun")
    log(f"seeded in {time.monotonic() - started:.1f} s")


#: 12 tasks on 3 queues; 85% succeeded, 8% failed, 2% timed out, 3% cancelled, 2% skipped.
SEED_SQL = """
INSERT INTO fusion_jobs_jobrun (
    id, task_name, queue, status, mode, kwargs, result, error, traceback, attempts, lost_attempts,
    max_retries, execution_timeout, attempt_log, enqueued_at, published_at, started_at, finished_at,
    worker, enqueued_by, progress_stage, progress_done, progress_total, skip_reason
)
SELECT
    gen_random_uuid(),
    'bench-task-' || (i %% 12),
    (ARRAY['default', 'documents', 'agent'])[1 + i %% 3],
    status,
    CASE WHEN i %% 10 = 0 THEN 'inline' ELSE 'worker' END,
    jsonb_build_object('document_id', i, 'user_id', i %% 977, 'options', jsonb_build_object('lang', 'en')),
    CASE WHEN status = 'succeeded' THEN jsonb_build_object('chunks', i %% 50, 'ok', true) END,
    CASE WHEN status IN ('failed', 'timed_out') THEN 'RuntimeError: extraction failed on page 12' ELSE '' END,
    CASE WHEN status IN ('failed', 'timed_out') THEN %(traceback)s ELSE '' END,
    CASE WHEN status IN ('failed', 'timed_out') THEN 3 ELSE 1 END,
    0,
    3,
    600,
    CASE WHEN status IN ('failed', 'timed_out')
        THEN jsonb_build_array(
            jsonb_build_object('attempt', 1, 'outcome', 'failed', 'worker', 'w1:101', 'error', 'RuntimeError'),
            jsonb_build_object('attempt', 2, 'outcome', 'failed', 'worker', 'w2:202', 'error', 'RuntimeError'))
        ELSE '[]'::jsonb END,
    enqueued_at,
    enqueued_at + interval '5 milliseconds',
    CASE WHEN status IN ('cancelled', 'skipped') THEN NULL ELSE enqueued_at + interval '200 milliseconds' END,
    enqueued_at + interval '200 milliseconds' + (power(random(), 3) * interval '60 seconds'),
    'worker-' || (i %% 8) || ':' || (1000 + i %% 97),
    'example.documents.views:upload',
    CASE WHEN i %% 4 = 0 THEN 'embedding' ELSE '' END,
    CASE WHEN i %% 4 = 0 THEN 40 END,
    CASE WHEN i %% 4 = 0 THEN 40 END,
    CASE WHEN status IN ('cancelled', 'skipped') THEN status ELSE '' END
FROM (
    SELECT
        i,
        now() - (i::float8 / %(rows)s) * interval '14 days' - random() * interval '30 seconds' AS enqueued_at,
        CASE
            WHEN r < 0.85 THEN 'succeeded'
            WHEN r < 0.93 THEN 'failed'
            WHEN r < 0.95 THEN 'timed_out'
            WHEN r < 0.98 THEN 'cancelled'
            ELSE 'skipped'
        END AS status
    FROM (SELECT i, random() AS r FROM generate_series(%(low)s, %(high)s) AS i) AS g
) AS s
"""


def refresh_rollup() -> dict[str, Any]:
    """Bring the dashboard's rollup up to date, as the ``fusion-jobs-rollup`` cron does."""
    from fusion_jobs.models import RunRollup
    from fusion_jobs.rollup import refresh_rollup as refresh

    started = time.monotonic()
    result = refresh()
    seconds = time.monotonic() - started
    from django.db import connection

    with connection.cursor() as cursor:  # as autovacuum would after the backfill's inserts
        cursor.execute("ANALYZE fusion_jobs_runrollup")
    rows = RunRollup.objects.count()
    log(f"rollup refreshed from {result.start:%Y-%m-%d %H:%M} in {seconds:.1f} s ({rows:,} rollup rows)")
    started = time.monotonic()
    refresh()  # what each cron tick costs once caught up: the last LAG minutes again
    tick = time.monotonic() - started
    log(f"a caught-up refresh (one cron tick) takes {tick * 1000:.0f} ms")
    return {"refresh_seconds": round(seconds, 1), "tick_ms": round(tick * 1000, 1), "rows": rows}


def measure(client: Any, url: str, repeat: int) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    response = client.get(url)  # warm-up
    if response.status_code != 200:
        raise SystemExit(f"{url} answered {response.status_code}")
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    ordered = sorted(timings)
    return {
        "url": url,
        "median_ms": round(statistics.median(timings), 1),
        "min_ms": round(ordered[0], 1),
        "max_ms": round(ordered[-1], 1),
        "runs": repeat,
        "queries": len(queries),
        "bytes": len(response.content),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7, help="timed requests per page (median), >= 5")
    parser.add_argument("--reseed", action="store_true", help="rebuild the seed even if present")
    args = parser.parse_args()
    if args.repeat < 5:
        parser.error("--repeat must be at least 5")
    log(
        f"config: rows={args.rows:,} repeat={args.repeat} database={DB} on 127.0.0.1:5432 "
        f"target<{TARGET_MS:.0f} ms python={platform.python_version()}"
    )
    ensure_database()
    setup_django()
    seed(args.rows, args.reseed)
    rollup = refresh_rollup()

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.urls import reverse

    from fusion_jobs.models import JobRun

    user_model = get_user_model()
    user = user_model.objects.filter(username="bench").first() or user_model.objects.create_superuser(
        "bench", "bench@example.invalid", "bench"
    )
    client = Client()
    client.force_login(user)
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        pg_version = cursor.fetchone()[0].split(" on ")[0]
    changelist = reverse("admin:fusion_jobs_jobrun_changelist")
    dashboard = reverse("admin:fusion_jobs_jobrun_dashboard")
    sample = JobRun.objects.filter(status="failed").only("id").order_by("-enqueued_at").first()
    assert sample is not None
    pages = [
        ("run list", changelist, True),
        ("run list, failed + one task", f"{changelist}?status__exact=failed&task_name=bench-task-3", True),
        ("dashboard, last hour", dashboard, True),
        ("dashboard, last day", f"{dashboard}?window=24h", True),
        ("dashboard, last week", f"{dashboard}?window=7d", True),
        ("dashboard, last week, one task", f"{dashboard}?window=7d&task=bench-task-3", False),
        ("run list, page 50", f"{changelist}?p=50", False),
        ("run list, last 24 h", f"{changelist}?enqueued=24h", False),
        ("run list, search id prefix", f"{changelist}?q={str(sample.pk)[:8]}", False),
        ("run detail (failed run)", reverse("admin:fusion_jobs_jobrun_change", args=[sample.pk]), False),
    ]
    results = []
    log("load average {:.2f} {:.2f} {:.2f} (1/5/15 min)".format(*os.getloadavg()))
    for name, url, required in pages:
        log(f"timing {name}: {url}")
        result = {"page": name, "required": required, **measure(client, url, args.repeat)}
        result["ok"] = result["median_ms"] < TARGET_MS
        results.append(result)

    width = max(len(r["page"]) for r in results)
    print()
    print(f"{'page':<{width}}  {'median':>9}  {'min':>8}  {'max':>8}  queries  target")
    for r in results:
        verdict = ("ok" if r["ok"] else "SLOW") + ("" if r["required"] else " (extra)")
        print(
            f"{r['page']:<{width}}  {r['median_ms']:>6.1f} ms  {r['min_ms']:>5.1f} ms  {r['max_ms']:>5.1f} ms"
            f"  {r['queries']:>7}  {verdict}"
        )
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM fusion_jobs_jobrun")
        rows = cursor.fetchone()[0]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "admin_scale",
        "rows": rows,
        "target_ms": TARGET_MS,
        "repeat": args.repeat,
        "postgresql": pg_version,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "rollup": rollup,
        "pages": results,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {RESULTS.relative_to(ROOT)}")
    required_ok = all(r["ok"] for r in results if r["required"])
    log("all required pages under target" if required_ok else "some required page is over target")
    return 0 if required_ok else 1


if __name__ == "__main__":
    sys.exit(main())
