"""django-dramatiq's ``rundramatiq`` options on fusion-jobs' supervisor, so Procfiles and units keep working.

``manage.py rundramatiq`` declares its options with django-dramatiq's own ``add_arguments``
(same names, short flags and ``nargs``); this module gives each one its meaning for the
supervisor of :mod:`fusion_jobs.worker`, which starts its worker processes itself instead of
exec'ing Dramatiq's CLI:

- ``--processes``/``--threads``/``--queues``: the pool (``--queues`` with no name: every queue).
- ``--path``: put on ``sys.path`` here and on ``PYTHONPATH`` for the worker processes.
- ``--pid-file``: the supervisor's pid, written at start and removed at exit; a file naming a live
  process is refused (two supervisors on one pid file).
- ``--log-file``: the supervisor's and the worker processes' output appended to the file.
- ``--skip-logging``: worker processes keep Django's ``LOGGING`` and add no handler of their own.
- ``--worker-shutdown-timeout``: milliseconds a stopping worker process waits for running tasks.
- ``--reload``/``--watch``/``--reload-use-polling``: replace the processes when a loaded source
  file changes (always by polling file times).
- ``--fork-function``: each function runs in its own process (``fusion_jobs.fork_function``),
  next to the worker processes, dying with the supervisor.
- ``--use-spawn``: accepted; worker processes are always fresh interpreters.
- ``--use-gevent``: refused (worker processes are threaded).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError

from .exit_codes import SUPERVISOR_ENV
from .utils import pid_alive, positive_int

#: Worker processes read it at start-up (Dramatiq's own variable; see fusion_jobs.worker_process).
SHUTDOWN_TIMEOUT_ENV = "dramatiq_worker_shutdown_timeout"
#: Set by ``--skip-logging``: fusion_jobs.bootstrap then adds no log handler.
SKIP_LOGGING_ENV = "FUSION_JOBS_WORKER_SKIP_LOGGING"


def _count(option: str, value: Any) -> int | None:
    if value is None:
        return None
    try:
        return positive_int(str(value))
    except argparse.ArgumentTypeError as exc:
        raise CommandError(f"argument {option}: {exc}", returncode=2) from None


def counts(options: dict[str, Any]) -> tuple[int | None, int | None]:
    """``--processes`` and ``--threads``, each at least 1 (None: the setting)."""
    return _count("--processes", options.get("processes")), _count("--threads", options.get("threads"))


def _claim_pid_file(path: Path) -> None:
    try:
        existing = int(path.read_text().strip() or 0)
    except FileNotFoundError:
        existing = 0
    except (OSError, ValueError):
        existing = 0  # unreadable or not a pid: overwritten
    if existing and existing != os.getpid() and pid_alive(existing):
        raise CommandError(f"--pid-file {path}: process {existing} is running with this pid file")
    path.write_text(f"{os.getpid()}\n")


def _redirect_output(path: Path) -> None:
    """Append this process's stdout and stderr (inherited by the worker processes) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        os.close(fd)


def _start_forks(functions: list[str]) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, SUPERVISOR_ENV: str(os.getpid())}
    return [
        subprocess.Popen([sys.executable, "-m", "fusion_jobs.fork_function", function], env=env)
        for function in functions
    ]


@contextlib.contextmanager
def django_dramatiq_options(options: dict[str, Any]) -> Iterator[None]:
    """Apply django-dramatiq's options around the supervisor's run (see the module docstring)."""
    if options.get("use_gevent"):
        raise CommandError(
            "--use-gevent is not supported: fusion-jobs worker processes are threaded (drop the option; "
            "--threads sets the concurrency)"
        )
    timeout = options.get("worker_shutdown_timeout")
    if timeout is not None and timeout < 0:
        raise CommandError(f"argument --worker-shutdown-timeout: {timeout} is below 0", returncode=2)
    paths = [os.path.abspath(p) for p in options.get("path") or []]
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)
    if paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [os.environ.get("PYTHONPATH")])])
    if timeout is not None:
        os.environ[SHUTDOWN_TIMEOUT_ENV] = str(timeout)
    if options.get("skip_logging"):
        os.environ[SKIP_LOGGING_ENV] = "1"
    if options.get("log_file"):
        _redirect_output(Path(options["log_file"]))
    pid_file = Path(options["pid_file"]) if options.get("pid_file") else None
    if pid_file is not None:
        _claim_pid_file(pid_file)
    forks = _start_forks(list(options.get("forks") or []))
    try:
        yield
    finally:
        for proc in forks:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in forks:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if pid_file is not None:
            with contextlib.suppress(OSError, ValueError):
                if int(pid_file.read_text().strip()) == os.getpid():
                    pid_file.unlink()
