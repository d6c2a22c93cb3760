"""Starting Dramatiq workers for every registered task (what ``manage.py rundramatiq`` calls)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from django.apps import apps
from django.db import DatabaseError, connections, router
from django.db.migrations.executor import MigrationExecutor

from .api import get_jobs_status, is_jobs_enabled
from .conf import jobs_settings, queue_namespace
from .exit_codes import (
    EXIT_BROKER_REFUSED,
    EXIT_CONFIG,
    HARD_LIMIT_EXIT,
    SUPERVISOR_ENV,
    THREAD_DIED_EXIT,
)
from .metrics import start_exporter
from .registry import all_tasks
from .reloading import CodeWatch, Watch, migration_watch
from .utils import mask_url


class Output(Protocol):
    """Where commands print: sys.stdout or a management command's OutputWrapper."""

    def write(self, text: str, /) -> Any: ...

    def flush(self) -> Any: ...


DISABLED_LINE = (
    "fusion-jobs: background jobs are disabled (FUSION_JOBS_BROKER_URL is not set); nothing to run."
)
EAGER_LINE = "fusion-jobs: FUSION_JOBS_EAGER is on, so jobs run inline; no worker is needed."


def disabled_reason() -> str | None:
    """The line to print when jobs are off, or None when they are on."""
    if is_jobs_enabled():
        return None
    return EAGER_LINE if jobs_settings.BROKER_URL else DISABLED_LINE


def worker_argv(*, threads: int, queues: Sequence[str] | None) -> list[str]:
    """The command line of one worker process (:mod:`fusion_jobs.worker_process`)."""
    argv = [sys.executable, "-m", "fusion_jobs.worker_process", "--threads", str(threads)]
    if queues:
        argv += ["--queues", *queues]
    return argv


#: Worker process exit codes that mean "fix the configuration", where restarting would only loop.
_FATAL_EXIT_CODES = {
    EXIT_CONFIG: "its configuration or a task module failed to load",
    EXIT_BROKER_REFUSED: "RabbitMQ refused its login",
}
#: A worker process that ran this long before dying is restarted at once (its backoff resets).
_HEALTHY_SECONDS = 60.0
_MAX_BACKOFF = 30.0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def database_problem() -> str | None:
    """Why the jobs database can't be used yet (down, or fusion_jobs not migrated), or None."""
    alias = router.db_for_write(apps.get_model("fusion_jobs", "JobRun")) or "default"
    connection = connections[alias]
    try:
        connection.ensure_connection()
        executor = MigrationExecutor(connection)
        missing = [
            migration.name
            for migration, backwards in executor.migration_plan(executor.loader.graph.leaf_nodes())
            if migration.app_label == "fusion_jobs" and not backwards
        ]
    except DatabaseError as exc:
        return f"database unavailable ({_first_line(exc)})"
    finally:
        connection.close()
    if missing:
        return (
            f"the database lacks the fusion_jobs tables or migrations ({', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}): run manage.py migrate"
        )
    return None


def wait_for_database(
    stdout: Output, who: str, stop: threading.Event | None = None, once: bool = False
) -> bool:
    """Wait until the database answers and is migrated, one line per attempt; False if stopped first.

    A long-running command started before its database (a deploy that boots workers and the
    database together, or before ``migrate``) waits for it with backoff instead of ending in a
    traceback. With ``once`` it reports the problem and gives up at once.
    """
    stop = stop or threading.Event()
    backoff = 1.0
    while not stop.is_set():
        problem = database_problem()
        if problem is None:
            return True
        if once:
            stdout.write(f"fusion-jobs {who}: {problem}\n")
            stdout.flush()
            return False
        stdout.write(f"fusion-jobs {who}: {problem}; retrying in {backoff:.0f} s\n")
        stdout.flush()
        stop.wait(backoff)
        backoff = min(backoff * 2, _MAX_BACKOFF)
    return False


def wait_for_broker(stdout: Output, stop: threading.Event) -> int | None:
    """Wait until RabbitMQ accepts a connection; an exit code when it refuses the login or vhost.

    A wrong password is one clear, password-free line and exit code 3, not workers that say they
    are ready and then log connection errors many times a second. An unreachable broker is
    retried with backoff, one line per attempt.
    """
    # lazy: both load pika, only with jobs enabled: the web process (the cron admin imports this
    # module) never does.
    import pika

    from .backends.broker import describe_refusal, open_connection

    backoff = 1.0
    while not stop.is_set():
        try:
            open_connection().close()
            return None
        except (
            pika.exceptions.ProbableAuthenticationError,
            pika.exceptions.ProbableAccessDeniedError,
        ) as exc:
            stdout.write(f"fusion-jobs worker: {describe_refusal(exc)}; not starting\n")
            stdout.flush()
            return EXIT_BROKER_REFUSED
        except (pika.exceptions.AMQPError, OSError) as exc:
            stdout.write(
                f"fusion-jobs worker: RabbitMQ at {mask_url(str(jobs_settings.BROKER_URL))} is unreachable "
                f"({type(exc).__name__}); retrying in {backoff:.0f} s\n"
            )
            stdout.flush()
            stop.wait(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)
    return None


class _Slot:
    """One worker process of the pool and its restart state."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.backoff = 0.0
        self.restart_at: float | None = 0.0
        self.reload = False
        #: Replaced processes finishing their running tasks (see :func:`replace_processes`).
        self.draining: list[subprocess.Popen[bytes]] = []

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        for proc in [self.proc, *self.draining]:
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signum)


def replace_processes(slots: Sequence[_Slot]) -> None:
    """Replace every worker process without a pause in consuming: each gets SIGTERM and drains.

    The old process stops taking messages, finishes its running tasks and hands its prefetched
    messages back to RabbitMQ; its replacement (fresh code, fresh schema) starts at once next to
    it. Used after a migration and by ``--reload``; SIGHUP instead stops, then restarts.
    """
    now = time.monotonic()
    for slot in slots:
        if slot.alive():
            assert slot.proc is not None
            with contextlib.suppress(ProcessLookupError):
                slot.proc.send_signal(signal.SIGTERM)
            slot.draining.append(slot.proc)
            slot.proc, slot.restart_at, slot.backoff = None, now, 0.0


def _describe_exit(code: int, hard_limit_exit: int, thread_died_exit: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}" + (" (out of memory?)" if -code == signal.SIGKILL else "")
    if code == hard_limit_exit:
        return "ended by the hard time limit"
    if code == thread_died_exit:
        return "a worker thread died (its run was recorded failed)"
    return f"exit code {code}"


def supervise(argv: list[str], env: dict[str, str], stdout: Output, *, code_reload: bool = False) -> int:
    """Run ``FUSION_JOBS_PROCESSES`` (from ``env``) worker processes, replacing each one that dies.

    The processes are independent: one that dies (killed, out of memory, ended by the hard time
    limit) is restarted alone, with a backoff that grows while it keeps dying, and the others
    keep consuming. Each dies with this supervisor (see :mod:`fusion_jobs.worker_process`).
    SIGTERM and SIGINT stop them gracefully; SIGHUP restarts them all (gracefully). Migrations
    applied while running (``FUSION_JOBS_RELOAD_ON_MIGRATE``), and with ``code_reload`` a changed
    source file, replace them all (:func:`replace_processes`), with one line. The database and
    the broker are checked first: a refused broker login exits 3 at once; a database that is
    down or not migrated, or a broker that is unreachable, is waited for.
    """
    stop = threading.Event()
    slots = [_Slot() for _ in range(max(1, int(env.get("FUSION_JOBS_PROCESSES") or 1)))]

    def on_signal(signum: int, frame: object) -> None:
        if signum == signal.SIGHUP and not stop.is_set():
            for slot in slots:
                slot.reload = True
                slot.signal(signal.SIGTERM)
            return
        stop.set()
        for slot in slots:
            slot.signal(signal.SIGTERM)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    if not wait_for_database(stdout, "worker", stop):
        return 0
    refused = wait_for_broker(stdout, stop)
    if refused is not None or stop.is_set():
        return refused or 0
    env = {**env, SUPERVISOR_ENV: str(os.getpid())}
    watches: list[Watch] = [w for w in (migration_watch(), CodeWatch() if code_reload else None) if w]
    result = 0
    while True:
        for watch in watches:
            why = None if stop.is_set() else watch.changed()
            if why:
                stdout.write(f"fusion-jobs worker: {why}\n")
                stdout.flush()
                replace_processes(slots)
                break
        now = time.monotonic()
        for slot in slots:
            if slot.proc is not None and not slot.alive() and slot.restart_at is None and not stop.is_set():
                code = slot.proc.returncode
                if code in _FATAL_EXIT_CODES:
                    stdout.write(
                        f"fusion-jobs worker: worker process {slot.proc.pid} exited with code {code} "
                        f"({_FATAL_EXIT_CODES[code]}); stopping\n"
                    )
                    stdout.flush()
                    result = code
                    on_signal(signal.SIGTERM, None)
                    break
                reloading, slot.reload = slot.reload, False
                if reloading or now - slot.started > _HEALTHY_SECONDS or code == HARD_LIMIT_EXIT:
                    slot.backoff = 0.0
                else:
                    slot.backoff = min(max(slot.backoff * 2, 1.0), _MAX_BACKOFF)
                if not reloading:
                    others = sum(1 for s in slots if s.alive())
                    stdout.write(
                        f"fusion-jobs worker: worker process {slot.proc.pid} exited ({_describe_exit(code, HARD_LIMIT_EXIT, THREAD_DIED_EXIT)}); "
                        f"restarting in {slot.backoff:.0f} s; the other {others} keep consuming\n"
                    )
                    stdout.flush()
                slot.restart_at = now + slot.backoff
            if not stop.is_set() and slot.restart_at is not None and now >= slot.restart_at:
                slot.proc = subprocess.Popen(argv, env=env)
                slot.started, slot.restart_at = time.monotonic(), None
        for slot in slots:
            slot.draining = [proc for proc in slot.draining if proc.poll() is None]
        if stop.is_set() and not any(slot.alive() or slot.draining for slot in slots):
            return result
        time.sleep(0.1)


def run_worker(
    *,
    processes: int | None = None,
    threads: int | None = None,
    queues: Sequence[str] | None = None,
    prefetch: int | None = None,
    stdout: Output = sys.stdout,
    metrics_port: int | None = None,
    code_reload: bool = False,
) -> int:
    """Print the configuration, then run and supervise the worker processes."""
    reason = disabled_reason()
    if reason:
        stdout.write(reason + "\n")
        stdout.flush()
        return 0
    processes = processes or int(jobs_settings.PROCESSES)
    threads = threads or int(jobs_settings.THREADS)
    tasks = all_tasks()
    task_queues = sorted({t.effective_queue for t in tasks.values()})
    serving = list(queues) if queues else task_queues
    status = get_jobs_status()
    env = dict(os.environ, FUSION_JOBS_PROCESSES=str(processes))
    # By default one message per thread: none waits in a process's buffer behind a long task
    # (RabbitMQ's consumer timeout counts that wait, and another process may be idle). Short
    # tasks drain faster with more (Dramatiq's own default is twice the threads).
    if prefetch:
        env["dramatiq_queue_prefetch"] = str(prefetch)
    else:
        env.setdefault("dramatiq_queue_prefetch", str(threads))
    stdout.write(
        f"fusion-jobs worker: broker={status['broker']} namespace={queue_namespace() or '-'} queues={','.join(serving) or '-'} "
        f"processes={processes} threads={threads} prefetch={env['dramatiq_queue_prefetch']} tasks={len(tasks)} ({', '.join(sorted(tasks)) or 'none'})\n"
    )
    stdout.flush()
    port = int(jobs_settings.METRICS_PORT) if metrics_port is None else metrics_port
    if port:
        address = str(jobs_settings.METRICS_ADDRESS)
        try:
            exporter = start_exporter(port, address)
        except (RuntimeError, OSError) as exc:
            stdout.write(f"fusion-jobs worker: cannot serve metrics on {address}:{port}: {exc}\n")
            stdout.flush()
            return EXIT_CONFIG
        env.update(exporter.child_env())
        stdout.write(
            f"fusion-jobs worker: Prometheus metrics on http://{address}:{exporter.port}/metrics "
            f"(multiprocess directory {exporter.directory})\n"
        )
        stdout.flush()
    return supervise(worker_argv(threads=threads, queues=queues), env, stdout, code_reload=code_reload)
