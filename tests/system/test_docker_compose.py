"""The production image and docker-compose.yml.

No Docker daemon runs on this kind of machine (CI included), so the compose file's shape is checked by
parsing it, and the image's own command (gunicorn on the production settings, static files through
WhiteNoise) is run here without Docker. Where ``docker info`` works, the image is also built and checked
for test tools; elsewhere that one test is skipped with the reason, even under ``CI=true``: the missing
daemon is a property of the machine, not a service the suite is supposed to start.
"""

from __future__ import annotations

import re
import secrets
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.processes import environment, free_port, wait_until_serving

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("web", "worker", "crons", "migrate")
#: Never in the production image: test, lint, type-check and benchmark tools (requirements-dev.txt).
DEV_TOOLS = (
    "pytest",
    "playwright",
    "mypy",
    "ruff",
    "celery",
    "matplotlib",
    "py-spy",
    "fpdf2",
    "django-stubs",
)


def load() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-r"):
            names.add(re.split(r"[=<>\[ ]", line)[0].lower())
    return names


def test_services_and_commands_are_exec_form() -> None:
    services = load()["services"]
    assert {"postgres", "rabbitmq", "migrate", "web", "worker", "crons"} <= set(services)
    assert services["migrate"]["command"] == ["python", "manage.py", "prepare"]
    assert services["web"]["command"][:2] == ["gunicorn", "example.wsgi"]
    assert services["worker"]["command"][:3] == ["python", "manage.py", "rundramatiq"]
    assert services["crons"]["command"] == ["python", "manage.py", "runcrons"]
    for name, service in services.items():
        command = service.get("command", [])
        # A list is exec'd directly: the process is PID 1 and receives SIGTERM (no sh -c in between).
        assert isinstance(command, list), f"{name}: use the exec (list) form"
        assert "runserver" not in command and "sh" not in command, name


def test_app_services_wait_for_migrate_and_point_at_the_compose_services() -> None:
    services = load()["services"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["migrate"]["restart"] == "no"
    for name in ("web", "worker", "crons"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert services[name]["depends_on"]["rabbitmq"] == {"condition": "service_healthy"}
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert re.fullmatch(
            r"postgres://fusion:\$\{POSTGRES_PASSWORD:-fusion\}@postgres:5432/fusion", env["DATABASE_URL"]
        )
        assert "@rabbitmq:5672/" in env["FUSION_JOBS_BROKER_URL"]
        # No key in the file: compose refuses to start without one (and so would the web process).
        assert env["DJANGO_SECRET_KEY"].startswith("${DJANGO_SECRET_KEY:?")
        assert "DJANGO_DEBUG" not in env
        assert env["DJANGO_SUPERUSER_PASSWORD"] == "${DJANGO_SUPERUSER_PASSWORD:-}"
    assert "healthz" in " ".join(services["web"]["healthcheck"]["test"])
    assert (ROOT / services["web"]["build"] / "Dockerfile").exists()


def test_only_the_web_port_is_public_and_the_management_ui_is_on_loopback() -> None:
    services = load()["services"]
    assert services["web"]["ports"] == ["8000:8000"]
    assert services["rabbitmq"]["ports"] == ["127.0.0.1:15672:15672"]
    assert "ports" not in services["postgres"]
    for name in ("worker", "crons", "migrate"):
        assert "ports" not in services[name], name


def test_the_image_installs_the_runtime_requirements_only() -> None:
    dockerfile = "\n".join(
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if not line.startswith("#")
    )
    runtime = requirement_names(ROOT / "requirements.txt")
    development = requirement_names(ROOT / "requirements-dev.txt")

    assert "RUN pip install -r requirements.txt" in dockerfile
    assert "requirements-dev" not in dockerfile
    assert {"gunicorn", "whitenoise", "django"} <= runtime
    assert not runtime & set(DEV_TOOLS), runtime & set(DEV_TOOLS)
    assert {"pytest", "playwright", "mypy", "ruff"} <= development
    cmd = re.search(r"^CMD (.*)$", dockerfile, re.M)
    assert cmd and cmd.group(1).startswith('["gunicorn", "example.wsgi"')
    assert re.search(r"^USER app$", dockerfile, re.M)


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", "db.sqlite3", "media", "tests", "bench", ".env"} <= ignored


def test_the_image_command_serves_the_production_settings(tmp_path: Path) -> None:
    """What the web container runs (gunicorn, DEBUG off, collected static files), without Docker."""
    env = environment(
        ("DJANGO_", "FUSION_JOBS_", "DATABASE_URL"),
        DJANGO_SETTINGS_MODULE="example.settings",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="localhost,127.0.0.1",
        DJANGO_HTTPS="0",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        STATIC_ROOT=str(tmp_path / "static"),
        MEDIA_ROOT=str(tmp_path / "media"),
    )
    gunicorn = Path(sys.executable).with_name("gunicorn")
    if not gunicorn.exists():
        pytest.fail("gunicorn is missing: it is in requirements.txt (scripts/setup.sh installs it)")
    for step in (["collectstatic", "--noinput", "--verbosity", "0"], ["prepare", "--verbosity", "0"]):
        done = subprocess.run(
            [sys.executable, "manage.py", *step],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    port = free_port()
    log = (tmp_path / "gunicorn.log").open("wb")
    proc = subprocess.Popen(
        [str(gunicorn), "example.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "2"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(
            base + "/healthz", proc, tmp_path / "gunicorn.log", 60, ok=lambda body: body == b"ok"
        )
        with urllib.request.urlopen(base + "/static/example.css", timeout=5) as response:  # noqa: S310
            assert response.status == 200 and b".badge" in response.read()
        with urllib.request.urlopen(base + "/sandbox/jobs/", timeout=10) as response:  # noqa: S310
            assert response.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)  # what `docker compose stop` sends to PID 1
        returncode = proc.wait(30)
        log.close()
    assert returncode == 0, (tmp_path / "gunicorn.log").read_text(errors="replace")


def _docker_daemon() -> str:
    """Empty when a Docker daemon answers, else why not."""
    if shutil.which("docker") is None:
        return "no docker command on this machine"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30, check=False)
    return "" if info.returncode == 0 else "docker info failed: no Docker daemon on this machine"


@pytest.mark.slow
def test_the_production_image_builds_and_contains_no_test_tools() -> None:
    reason = _docker_daemon()
    if reason:
        # Allowed under CI=true too: this machine kind (and CI's) has no Docker daemon to start.
        pytest.skip(f"{reason}; the compose shape and the image's command are tested above without it")
    tag = f"fusion-jobs-test:{secrets.token_hex(4)}"
    build = subprocess.run(
        ["docker", "build", "-t", tag, str(ROOT)], capture_output=True, text=True, timeout=1800
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    try:
        listed = subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "pip", tag, "list", "--format", "freeze"],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        ).stdout.lower()
        installed = {line.split("==")[0] for line in listed.splitlines()}
        assert not installed & set(DEV_TOOLS), installed & set(DEV_TOOLS)
        assert "gunicorn" in installed
        files = subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "ls", tag, "-a", "/app"],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        ).stdout.split()
        assert not {".venv", ".git", "db.sqlite3", "tests"} & set(files)
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, timeout=120, check=False)
