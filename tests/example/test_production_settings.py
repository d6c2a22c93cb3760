"""The example's shipped defaults, as a fresh deployment gets them: each check runs ``example.settings`` in
a subprocess with only the environment a deployment would set."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import RequestFactory, override_settings
from django.views.debug import technical_500_response

ROOT = Path(__file__).resolve().parents[2]
#: What a production deployment sets (README "Deploying"); DJANGO_DEBUG stays unset.
PRODUCTION_ENV = {
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_ALLOWED_HOSTS": "jobs.example.com",
    "FUSION_JOBS_BROKER_URL": "amqp://fusion:broker-pw@rabbitmq:5672/fusion",
}


def run_example(code: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run with a clean environment: none of the developer's DJANGO_*, DATABASE_URL or FUSION_JOBS_*."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "FUSION_JOBS_", "DATABASE_URL", "SMTP_", "DOCUMENTS_"))
    }
    base.update(
        DJANGO_SETTINGS_MODULE="example.settings",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        MEDIA_ROOT=str(tmp_path / "media"),
        **env,
    )
    return subprocess.run(
        [sys.executable, *code], cwd=ROOT, env=base, capture_output=True, text=True, timeout=120, check=False
    )


def test_debug_is_off_by_default(tmp_path: Path) -> None:
    out = run_example(
        ["-c", "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)"],
        tmp_path,
    )

    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_the_web_process_refuses_to_start_without_a_secret_key_when_debug_is_off(tmp_path: Path) -> None:
    refused = run_example(["-c", "import example.wsgi"], tmp_path)
    debug = run_example(["-c", "import example.wsgi"], tmp_path, DJANGO_DEBUG="1")
    production = run_example(["-c", "import example.wsgi"], tmp_path, **PRODUCTION_ENV)

    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: DJANGO_SECRET_KEY is not set and DEBUG is off: "
        "refusing to serve without a secret key (set DJANGO_SECRET_KEY, or DJANGO_DEBUG=1 for local "
        "development only)"
    )
    assert debug.returncode == 0, debug.stderr
    assert production.returncode == 0, production.stderr


def test_check_deploy_is_clean_for_the_production_settings(tmp_path: Path) -> None:
    out = run_example(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"], tmp_path, **PRODUCTION_ENV
    )

    assert out.returncode == 0, out.stdout + out.stderr
    assert "System check identified no issues" in out.stdout
    assert "broker-pw" not in out.stdout + out.stderr


def test_check_deploy_flags_the_local_http_mode(tmp_path: Path) -> None:
    """DJANGO_HTTPS=0 (compose on localhost) is not a production setting, and check --deploy says so."""
    out = run_example(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        tmp_path,
        **PRODUCTION_ENV,
        DJANGO_HTTPS="0",
    )

    assert out.returncode != 0
    assert "security.W012" in out.stderr + out.stdout  # SESSION_COOKIE_SECURE


#: Random, so the page's source-code excerpts (which show this file's lines) cannot contain them.
PW = {where: secrets.token_hex(8) for where in ("broker", "settings_db", "meta", "frame_local", "frame_dict")}


def _fail_with_secrets_in_scope() -> None:
    database_url = f"postgres://app:{PW['frame_local']}@db:5432/app"  # noqa: F841 - shown by the debug page
    connection_params = {"host": "db", "user": "app", "password": PW["frame_dict"]}  # noqa: F841
    raise OSError("File name too long")


def test_the_debug_page_shows_no_password() -> None:
    """DEBUG on (local development): the error page still masks passwords in settings, META and frames."""
    request = RequestFactory().post(
        "/documents/", HTTP_HOST="localhost", DATABASE_URL=f"postgres://app:{PW['meta']}@db:5432/app"
    )
    with override_settings(
        DEBUG=True,
        FUSION_JOBS_BROKER_URL=f"amqp://fusion:{PW['broker']}@rabbitmq:5672/",
        EXAMPLE_URL_SETTING=f"postgres://app:{PW['settings_db']}@db/app",
    ):
        try:
            _fail_with_secrets_in_scope()
        except OSError:
            html = technical_500_response(request, *sys.exc_info()).content.decode()

    assert "File name too long" in html  # it is the debug page
    for where, password in PW.items():
        assert password not in html, f"the {where} password is on the debug page"
    assert "amqp://fusion:********@rabbitmq:5672/" in html


@pytest.mark.parametrize("flag", ["1", "true", "on"])
def test_django_debug_turns_debug_on(tmp_path: Path, flag: str) -> None:
    out = run_example(
        ["-c", "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)"],
        tmp_path,
        DJANGO_DEBUG=flag,
    )
    assert out.stdout.strip() == "True", out.stderr


def test_the_readme_lists_every_environment_variable_the_example_reads() -> None:
    """README "Deploying" is where a deployer looks: every variable example/settings.py reads is there."""
    source = (ROOT / "example" / "settings.py").read_text()
    read = set(re.findall(r'(?:env\.[a-z]+|from_environment)\("([A-Z0-9_]+)"', source))
    assert {
        "DATABASE_URL",
        "DJANGO_SECRET_KEY",
        "SMTP_USE_TLS",
        "DOCUMENTS_MAX_PAGES",
    } <= read  # the pattern finds them
    readme = (ROOT / "README.md").read_text()
    deploying = readme[readme.index("## Deploying") :]
    deploying = deploying[: deploying.index("\n## ", 1)]
    missing = {name for name in read if not name.startswith("FUSION_JOBS_") and f"`{name}`" not in deploying}
    assert not missing, f"not in README 'Deploying': {sorted(missing)}"
    for name in (
        "PORT",
        "DJANGO_SUPERUSER_PASSWORD",
        "docker compose up --build",
        "pip install",
        "python -m build",
    ):
        assert name in readme, name
    assert "seed" not in readme.lower().replace("seeded", ""), "speak of the project, not the seed"
