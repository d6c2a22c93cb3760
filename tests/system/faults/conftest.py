"""Service control for fault tests: each test restores what it stopped, whatever happens."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _wait_port(port: int, up: bool, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                is_up = True
        except OSError:
            is_up = False
        if is_up == up:
            return
        time.sleep(0.2)
    raise RuntimeError(f"port {port} did not go {'up' if up else 'down'} in {timeout:.0f} s")


class Services:
    def rabbit_stop(self) -> None:
        subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=60)
        _wait_port(5672, up=False)

    def rabbit_start(self) -> None:
        subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)
        _wait_port(5672, up=True)

    def pg_restart(self) -> None:
        version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        _wait_port(5432, up=True)


@pytest.fixture
def services() -> Iterator[Services]:
    svc = Services()
    yield svc
    # Whatever the test did, leave both services up for the next one.
    try:
        _wait_port(5672, up=True, timeout=1)
    except RuntimeError:
        svc.rabbit_start()
    _wait_port(5432, up=True)
