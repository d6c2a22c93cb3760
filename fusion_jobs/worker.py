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


def run_worker(
    *,
    processes: int | None = None,
    threads: int | None = None,
    queues: Sequence[str] | None = None,
    stdout: Output = sys.stdout,
    exec_process: bool = True,
) -> int:
    """Print the configuration, then replace this process with Dramatiq's worker master.

    Replacing (``exec``) rather than spawning keeps signals simple: SIGTERM to the PID the
    supervisor started reaches Dramatiq directly and shuts the workers down gracefully.
    """
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
    stdout.write(
        f"fusion-jobs worker: broker={status['broker']} queues={','.join(serving) or '-'} "
        f"processes={processes} threads={threads} tasks={len(tasks)} ({', '.join(sorted(tasks)) or 'none'})\n"
    )
    stdout.flush()
    argv = worker_argv(processes=processes, threads=threads, queues=queues)
    env = dict(os.environ)
    # A message waits in the prefetch buffer while the one before it runs, and RabbitMQ's
    # consumer timeout counts that wait: one message per thread is enough for long tasks.
    env.setdefault("dramatiq_queue_prefetch", str(threads))
    if not exec_process:
        import subprocess

        return subprocess.call(argv, env=env)
    os.execve(sys.executable, argv, env)
    return 0  # pragma: no cover - execve does not return
