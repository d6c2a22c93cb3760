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


@pytest.mark.parametrize(
    ("args", "prefetch"), [((), "3"), (("--prefetch", "7"), "7")], ids=["one-per-thread", "explicit"]
)
def test_rundramatiq_prefetch_reaches_dramatiq_and_the_startup_line(settings, monkeypatch, args, prefetch):
    from io import StringIO

    from django.core.management import call_command

    from fusion_jobs import worker

    settings.FUSION_JOBS_BROKER_URL = "amqp://guest:secret@127.0.0.1:5672/"
    settings.FUSION_JOBS_EAGER = False
    monkeypatch.delenv("dramatiq_queue_prefetch", raising=False)
    seen: dict[str, object] = {}

    def fake_supervise(argv: list[str], env: dict[str, str], stdout: object, **options: object) -> int:
        seen.update(argv=argv, prefetch=env["dramatiq_queue_prefetch"])
        return 0

    monkeypatch.setattr(worker, "supervise", fake_supervise)
    out = StringIO()
    call_command("rundramatiq", "-p", "1", "-t", "3", *args, stdout=out)
    assert seen["prefetch"] == prefetch
    assert f"processes=1 threads=3 prefetch={prefetch} " in out.getvalue()
    assert "secret" not in out.getvalue()


@pytest.mark.parametrize("option", ["--prefetch", "--threads", "--processes"])
def test_rundramatiq_refuses_a_count_below_one(option):
    out = run_manage("rundramatiq", option, "0")
    assert out.returncode == 2
    assert f"argument {option}" in out.stderr and "0 is not at least 1" in out.stderr
