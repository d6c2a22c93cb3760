"""docker-compose.yml is for users (no Docker engine runs here): check its shape by parsing it."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def load() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_commands():
    services = load()["services"]
    assert {"postgres", "rabbitmq", "web", "worker", "crons"} <= set(services)
    assert "management" in services["rabbitmq"]["image"]
    assert "manage.py runserver" in services["web"]["command"]
    assert services["worker"]["command"].startswith("python manage.py rundramatiq")
    assert services["crons"]["command"] == "python manage.py runcrons"


def test_app_services_point_at_the_compose_services():
    services = load()["services"]
    for name in ("web", "worker", "crons"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert (
            env["FUSION_JOBS_BROKER_URL"].startswith("amqp://")
            and "@rabbitmq:5672/" in env["FUSION_JOBS_BROKER_URL"]
        )
        assert set(services[name]["depends_on"]) == {"postgres", "rabbitmq"}
    assert (ROOT / services["web"]["build"] / "Dockerfile").exists()
