"""Subprocesses of the tests: a clean environment, a free port, stopping a process group, the tree below a pid,
waiting for a forked child or for a server to answer."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def environment(drop: tuple[str, ...] = ("FUSION_JOBS_",), **values: str) -> dict[str, str]:
    """This process's environment without the variables whose names start with ``drop``, plus ``values``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith(drop)}, **values}


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL the process group of ``proc`` (started with ``start_new_session=True``)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def stop_group(proc: subprocess.Popen[Any], timeout: float = 20) -> int | None:
    """SIGTERM the process group and wait; SIGKILL it if it has not stopped within ``timeout`` seconds."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
    return proc.returncode


def descendants(pid: int) -> list[int]:
    """The process ids below ``pid``: children, their children, and so on."""
    found, todo = [], [pid]
    while todo:
        out = subprocess.run(
            ["pgrep", "-P", str(todo.pop())], capture_output=True, text=True, check=False
        ).stdout
        children = [int(p) for p in out.split()]
        found += children
        todo += children
    return found


def alive(pid: int) -> bool:
    """Running and not a zombie (an orphan's zombie may linger where PID 1 does not reap)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def free_port() -> int:
    """A TCP port on loopback that nothing listens on (for a server the test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_child(pid: int, timeout: float, *, hung: str) -> int:
    """The exit code of the forked child ``pid``; SIGKILL it and fail with ``hung`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail(hung)
    return os.waitstatus_to_exitcode(done[1])


def wait_until_serving(
    url: str, proc: subprocess.Popen[Any], log: Path, timeout: float, *, ok: Callable[[bytes], bool]
) -> None:
    """Poll ``url`` until a 200 whose body passes ``ok``; fail with the server's log if it exits or times out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback, test server)
                if response.status == 200 and ok(response.read()):
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{url} did not come up:\n{log.read_text(errors='replace')}")
        time.sleep(0.2)
