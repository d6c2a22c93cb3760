from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.utils import timezone

from fusion_jobs.management.commands.importdramatiqtasks import run_from_task
from fusion_jobs.models import JobRun
from fusion_jobs.recording import TRACEBACK_LIMIT
from tests.support.processes import environment

ROOT = Path(__file__).resolve().parents[3]


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment(DJANGO_SETTINGS_MODULE="tests.settings", **env),
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


@pytest.mark.django_db
def test_importdramatiqtasks_stores_a_row_with_nul_and_a_huge_traceback() -> None:
    """django-dramatiq stored whatever a message held; PostgreSQL refuses NUL (one such row failed
    every batch, every rerun), and a megabyte traceback has no place in the run list."""
    trace = "Traceback (most recent call last):\n" + "  frame\n" * 200_000 + "ValueError: bad\x00value"
    message = {
        "queue_name": "q\x00",
        "actor_name": "act\x00or",
        "args": [],
        "kwargs": {"key\x00": ["v\x00", {"n": "\x00"}]},
        "options": {"retries": 1, "traceback": trace},
    }
    now = timezone.now()
    row = SimpleNamespace(
        id=uuid.uuid4(),
        message_data=json.dumps(message).encode(),
        status="failed",
        actor_name="act\x00or",
        queue_name="q\x00",
        created_at=now,
        updated_at=now,
    )
    JobRun.objects.bulk_create([run_from_task(row)])
    run = JobRun.objects.get(pk=row.id)
    assert (run.task_name, run.queue) == ("act\ufffdor", "q\ufffd")
    assert run.kwargs == {"key\ufffd": ["v\ufffd", {"n": "\ufffd"}]}
    assert run.error == "ValueError: bad\ufffdvalue"
    assert len(run.traceback) <= TRACEBACK_LIMIT + 3 and run.traceback.endswith("ValueError: bad\ufffdvalue")
