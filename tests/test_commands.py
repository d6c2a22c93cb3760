from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FUSION_JOBS_")}
    clean.update(DJANGO_SETTINGS_MODULE="tests.settings", **env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("command", ["rundramatiq", "runcrons"])
def test_disabled_mode_prints_one_line_and_exits_0(command):
    out = run_manage(command)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    assert "background jobs are disabled" in lines[0]
    assert "FUSION_JOBS_BROKER_URL" in lines[0]


def test_eager_mode_worker_says_so():
    out = run_manage(
        "rundramatiq",
        FUSION_JOBS_EAGER="1",
        FUSION_JOBS_WORKER_BROKER_URL="amqp://guest:guest@127.0.0.1:5672/",
    )
    assert out.returncode == 0
    assert "FUSION_JOBS_EAGER is on" in out.stdout
