"""Soak test: thousands of runs with random failures, worker SIGKILLs, a RabbitMQ and a PostgreSQL restart.

Submission is paced over the whole soak (``--duration``) and tasks take 50-500 ms, so every
fault lands on runs being published, started and finished; the runs in flight are printed at
each fault. At the end it asserts unique completed == submitted and that no run is left running
or unpublished, and prints the duplicate count (at-least-once delivery may execute a run twice;
the history shows it).

Not part of CI (it takes minutes and restarts the machine's services).

    .venv/bin/python bench/soak.py [--runs 5000] [--duration 240] [--kill-every 30] [--timeout 900]

Uses its own database (fj_soak) and RabbitMQ vhost (fj_soak) on loopback; run it as root (it
calls rabbitmqctl and pg_ctlcluster).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB = "fj_soak"
VHOST = "fj_soak"
URL = f"amqp://guest:guest@127.0.0.1:5672/{VHOST}"
ENV = {
    **os.environ,
    "DJANGO_SETTINGS_MODULE": "tests.settings",
    "FUSION_JOBS_TEST_DB": DB,
    "FUSION_JOBS_WORKER_BROKER_URL": URL,
    "FUSION_JOBS_TEST_CONN_MAX_AGE": "600",
    "FUSION_JOBS_ON_PUBLISH_ERROR": "outbox",
    "PYTHONUNBUFFERED": "1",
}


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", flush=True)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=180)


def prepare() -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    sh("rabbitmqctl", "delete_vhost", VHOST, check=False)
    sh("rabbitmqctl", "add_vhost", VHOST)
    sh("rabbitmqctl", "set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")
    sh(sys.executable, "manage.py", "migrate", "-v0")


class Worker:
    def __init__(self, name: str) -> None:
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = open(f"/tmp/fj-soak-{name}.log", "ab")  # noqa: SIM115

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "rundramatiq", "-p", "1", "-t", "8"],
            cwd=ROOT,
            env=ENV,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def in_flight() -> str:
    """The runs in flight right now, by state: what a fault is about to hit."""
    from django.db import close_old_connections
    from django.db.models import Count, Q

    from fusion_jobs.models import JobRun

    try:
        close_old_connections()
        counts = JobRun.objects.filter(task_name="t-soak").aggregate(
            unpublished=Count("id", filter=Q(status__in=("queued", "retrying"), published_at__isnull=True)),
            queued=Count("id", filter=Q(status="queued", published_at__isnull=False)),
            running=Count("id", filter=Q(status="running")),
            retrying=Count("id", filter=Q(status="retrying")),
            succeeded=Count("id", filter=Q(status="succeeded")),
        )
    except Exception as exc:  # the database may be the thing restarting
        return f"in flight: unknown ({type(exc).__name__})"
    return "in flight: " + " ".join(f"{key}={value}" for key, value in counts.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--duration", type=float, default=240.0, help="seconds over which runs are submitted")
    parser.add_argument("--kill-every", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--fail-rate", type=float, default=0.1)
    parser.add_argument("--min-ms", type=int, default=50)
    parser.add_argument("--max-ms", type=int, default=500)
    args = parser.parse_args()
    os.chdir(ROOT)
    os.environ.update(ENV)
    log(
        f"runs={args.runs} over {args.duration:.0f}s tasks={args.min_ms}-{args.max_ms}ms fail_rate={args.fail_rate} "
        f"kill_every={args.kill_every}s broker=amqp://guest:***@127.0.0.1:5672/{VHOST} db={DB}"
    )
    prepare()
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import close_old_connections
    from django.db.models import Count

    import fusion_jobs
    from fusion_jobs.models import JobRun
    from tests.testapp.models import Marker

    workers = [Worker("a"), Worker("b")]
    for worker in workers:
        worker.start()
    submitted = 0
    done_submitting = threading.Event()
    interval = args.duration / max(args.runs, 1)

    def submit() -> None:
        nonlocal submitted
        begin = time.monotonic()
        for i in range(args.runs):
            while True:
                try:
                    close_old_connections()
                    fusion_jobs.enqueue(
                        "t-soak",
                        label=f"soak-{i}",
                        fail_rate=args.fail_rate,
                        min_ms=args.min_ms,
                        max_ms=args.max_ms,
                    )
                    submitted += 1
                    break
                except Exception as exc:  # the database restarting: the caller would retry too
                    log(f"enqueue {i} failed ({type(exc).__name__}); retrying")
                    time.sleep(0.5)
            if i % 500 == 0:
                log(f"submitted {i}")
            pause = begin + (i + 1) * interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        log(f"submitted all {submitted}")
        done_submitting.set()

    threading.Thread(target=submit, daemon=True).start()
    started = time.monotonic()
    next_kill = started + args.kill_every
    # Both restarts land while runs are still being submitted, started and finished.
    rabbit_at, pg_at = started + args.duration * 0.35, started + args.duration * 0.65
    kills = 0
    try:
        while time.monotonic() - started < args.timeout:
            now = time.monotonic()
            if now >= next_kill and not done_submitting.is_set():
                victim = workers[kills % len(workers)]
                log(f"SIGKILL worker {victim.name}; {in_flight()}")
                victim.kill()
                victim.start()
                kills += 1
                next_kill = now + args.kill_every
            if rabbit_at and now >= rabbit_at:
                log(f"restarting RabbitMQ; {in_flight()}")
                sh("rabbitmqctl", "stop_app")
                time.sleep(2)
                sh("rabbitmqctl", "start_app")
                rabbit_at = 0
            if pg_at and now >= pg_at:
                log(f"restarting PostgreSQL; {in_flight()}")
                version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]
                sh("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart")
                pg_at = 0
            if done_submitting.is_set() and not rabbit_at and not pg_at:
                try:
                    close_old_connections()
                    open_runs = JobRun.objects.filter(task_name="t-soak").exclude(status="succeeded").count()
                    unpublished = JobRun.objects.filter(published_at__isnull=True, mode="worker").count()
                except Exception:
                    open_runs = -1
                    unpublished = -1
                log(f"waiting: submitted={submitted} not yet succeeded={open_runs} unpublished={unpublished}")
                if open_runs == 0:
                    break
            else:
                log(f"progress: submitted={submitted}; {in_flight()}")
            time.sleep(5)
    finally:
        for worker in workers:
            worker.stop()
    close_old_connections()
    runs = JobRun.objects.filter(task_name="t-soak")
    succeeded = runs.filter(status="succeeded").count()
    unique = Marker.objects.filter(label__startswith="soak-").values("label").distinct().count()
    executions = Marker.objects.filter(label__startswith="soak-").count()
    running = runs.filter(status="running").count()
    unpublished = runs.filter(published_at__isnull=True).count()
    lost = sum(runs.values_list("lost_attempts", flat=True))
    by_status = dict(runs.values_list("status").annotate(n=Count("id")))
    log(
        f"RESULT submitted={submitted} succeeded={succeeded} unique_completed={unique} duplicates={executions - unique} "
        f"lost_attempts={lost} worker_kills={kills} left_running={running} unpublished={unpublished} by_status={by_status}"
    )
    ok = unique == submitted == args.runs and running == 0 and unpublished == 0
    log("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
