"""Worker processes the harness starts and stops, and the CPU time they (and the services) spend.

Each worker command runs in its own session, so it is stopped by its process group (it and its
children only) and its CPU is the sum over that session, plus the children it already reaped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from bench.compare.services import ROOT, BenchError, log

_running: list[Worker] = []
_TICK = os.sysconf("SC_CLK_TCK")


class Worker:
    """One worker command (argv), its log file, and its process group."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logdir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = logdir / f"{name}-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _running.append(self)
        return self

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(f"{self.name} worker exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        else:
            # The leader is gone; make sure nothing it started is left behind.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self in _running:
            _running.remove(self)

    @property
    def session(self) -> int:
        return self.proc.pid if self.proc is not None else -1


def stop_all() -> None:
    for worker in list(_running):
        try:
            worker.stop()
        except Exception as exc:  # cleanup goes on
            log(f"could not stop {worker.name}: {exc}")


# --- CPU -------------------------------------------------------------------------------------------


def _stat(pid: str) -> tuple[str, int, float, float] | None:
    """(command name, session id, own CPU s, reaped children's CPU s) of one process, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text.rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / _TICK
    reaped = (int(fields[13]) + int(fields[14])) / _TICK
    return name, int(fields[3]), own, reaped


def cpu_snapshot(sessions: list[int]) -> dict[str, dict[int, float]]:
    """CPU seconds so far per process of the workers (these sessions), PostgreSQL and RabbitMQ, from /proc.

    A process's reaped children count as its own: the postmaster carries the backends that already
    exited (a peer that reconnects per task pays there). PostgreSQL includes other databases' work,
    so read it on a quiet machine. RabbitMQ is its ``beam.smp`` processes.
    """
    out: dict[str, dict[int, float]] = {"worker": {}, "postgres": {}, "rabbitmq": {}}
    for pid in os.listdir("/proc"):
        stat = _stat(pid) if pid.isdigit() else None
        if stat is None:
            continue
        name, session, own, reaped = stat
        if session in sessions:
            out["worker"][int(pid)] = own + reaped
        elif name == "postgres":
            out["postgres"][int(pid)] = own + reaped
        elif name.startswith("beam"):
            out["rabbitmq"][int(pid)] = own
    return out


def cpu_spent(start: dict[str, dict[int, float]], end: dict[str, dict[int, float]]) -> dict[str, float]:
    """CPU seconds per component between two snapshots: processes alive at the end, from 0 if new since.

    A process gone by the end (say a ``rabbitmqctl`` someone ran) is left out rather than counted negative.
    """
    return {
        part: sum(cpu - start[part].get(pid, 0.0) for pid, cpu in procs.items())
        for part, procs in end.items()
    }


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as handle:
        fields = [float(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)
