"""Starting Dramatiq workers for every registered task (what ``manage.py rundramatiq`` calls)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, Protocol

from .api import get_jobs_status, is_jobs_enabled
from .conf import jobs_settings
from .registry import all_tasks


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


def worker_argv(
    *, processes: int, threads: int, queues: Sequence[str] | None, extra: Sequence[str] = ()
) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "dramatiq",
        "fusion_jobs.bootstrap",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
        *extra,
    ]
    if queues:
        argv += ["--queues", *queues]
    return argv


#: Dramatiq's exit codes that mean "fix the configuration", where restarting would only loop.
_FATAL_EXIT_CODES = {2: "a module failed to import or the command line is invalid", 4: "PID file problem"}


def supervise(argv: list[str], env: dict[str, str], stdout: Output) -> int:
    """Run Dramatiq's master, restarting it with backoff when a worker process dies.

    Dramatiq shuts all its workers down when one dies (killed, out of memory, or ended by the
    hard time limit); a supervisor has to start them again or the capacity is gone. SIGTERM,
    SIGINT and SIGHUP are passed on, and a requested shutdown is never followed by a restart.
    """
    import signal
    import subprocess
    import time

    stopping = False
    proc: subprocess.Popen[bytes] | None = None

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        if signum != signal.SIGHUP:
            stopping = True
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM if signum == signal.SIGINT else signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    backoff = 1.0
    while True:
        started = time.monotonic()
        proc = subprocess.Popen(argv, env=env)
        code = proc.wait()
        if stopping or code == 0:
            return 0 if stopping else code
        if code in _FATAL_EXIT_CODES:
            stdout.write(
                f"fusion-jobs worker: dramatiq exited with code {code} ({_FATAL_EXIT_CODES[code]}); not restarting\n"
            )
            stdout.flush()
            return code
        if time.monotonic() - started > 60:
            backoff = 1.0
        stdout.write(
            f"fusion-jobs worker: dramatiq exited with code {code} (a worker process died: killed, out of "
            f"memory, or stopped by the hard time limit); restarting in {backoff:.0f} s\n"
        )
        stdout.flush()
        deadline = time.monotonic() + backoff
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.1)
        if stopping:
            return 0
        backoff = min(backoff * 2, 30.0)


def run_worker(
    *,
    processes: int | None = None,
    threads: int | None = None,
    queues: Sequence[str] | None = None,
    prefetch: int | None = None,
    stdout: Output = sys.stdout,
) -> int:
    """Print the configuration, then run (and supervise) Dramatiq's worker master."""
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
    env = dict(os.environ)
    # By default one message per thread: none waits in a process's buffer behind a long task
    # (RabbitMQ's consumer timeout counts that wait, and another process may be idle). Short
    # tasks drain faster with more (Dramatiq's own default is twice the threads).
    if prefetch:
        env["dramatiq_queue_prefetch"] = str(prefetch)
    else:
        env.setdefault("dramatiq_queue_prefetch", str(threads))
    stdout.write(
        f"fusion-jobs worker: broker={status['broker']} queues={','.join(serving) or '-'} "
        f"processes={processes} threads={threads} prefetch={env['dramatiq_queue_prefetch']} tasks={len(tasks)} ({', '.join(sorted(tasks)) or 'none'})\n"
    )
    stdout.flush()
    return supervise(worker_argv(processes=processes, threads=threads, queues=queues), env, stdout)
