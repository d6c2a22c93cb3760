"""Without a broker the web process never imports pika (or dramatiq) and opens no network connection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, os, socket, sys

attempts = []
real_connect = socket.socket.connect

def guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        attempts.append(repr(address))
        raise OSError("network blocked by the test")
    return real_connect(self, address)

socket.socket.connect = guarded_connect
socket.create_connection = lambda *a, **k: (attempts.append(repr(a)), (_ for _ in ()).throw(OSError("blocked")))[1]

import fusion_jobs
after_import = {m: m in sys.modules for m in ("dramatiq", "pika")}

import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
call_command("check")
from django.test import Client
response = Client().get("/")
handle = fusion_jobs.enqueue("demo-hello", name="probe")
print(json.dumps({
    "after_import": after_import,
    "after_everything": {m: m in sys.modules for m in ("dramatiq", "pika")},
    "status": response.status_code,
    "run": [handle.mode, handle.status],
    "network_attempts": attempts,
}))
"""


def test_no_pika_and_no_network_without_a_broker(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FUSION_JOBS_", "DATABASE_URL", "DJANGO_SETTINGS_MODULE"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="example.settings",
        DATABASE_URL=f"sqlite:///{tmp_path / 'probe.sqlite3'}",
        MEDIA_ROOT=str(tmp_path / "media"),
        DJANGO_HTTPS="0",  # the test client speaks plain HTTP (DEBUG off redirects to HTTPS)
        DJANGO_SECRET_KEY="tests-only-not-a-secret",  # none by default with DEBUG off
    )
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["after_import"] == {"dramatiq": False, "pika": False}
    assert report["after_everything"] == {"dramatiq": False, "pika": False}
    assert report["status"] == 200
    assert report["run"] == ["inline", "succeeded"]
    assert report["network_attempts"] == []
