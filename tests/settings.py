"""Test settings: PostgreSQL and RabbitMQ on loopback (the real services), jobs inline by default.

Tests that need the broker turn it on with ``override_settings`` / the ``broker_url`` fixture.
``FUSION_JOBS_TEST_DB`` names the database for worker subprocesses that must share the test DB.
"""

from __future__ import annotations

import os

from example.settings import *  # noqa: F403
from example.settings import INSTALLED_APPS

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        # Worker subprocesses get the test database's name here; pytest-django creates TEST.NAME.
        "NAME": os.environ.get("FUSION_JOBS_TEST_DB", "fusion_jobs"),
        "USER": os.environ.get("PGUSER", "postgres"),
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "CONN_MAX_AGE": int(os.environ.get("FUSION_JOBS_TEST_CONN_MAX_AGE", "0")),
        "CONN_HEALTH_CHECKS": True,
        "TEST": {"NAME": os.environ.get("FUSION_JOBS_TEST_DB", "test_fusion_jobs")},
    }
}

SECRET_KEY = "tests-only-not-a-secret"  # example.settings has none with DEBUG off
SECURE_SSL_REDIRECT = False  # the test client speaks plain HTTP (production redirects to HTTPS)
INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp", "tests.opsapp", "tests.fjdt"]
# Django's Tasks framework on fusion-jobs (tests/integration/backends/test_django_tasks*.py).
TASKS = {"default": {"BACKEND": "fusion_jobs.backends.django_tasks.FusionJobsBackend"}}
# Worker subprocesses started by the tests pass their broker here; the test process starts inline.
FUSION_JOBS_BROKER_URL = os.environ.get("FUSION_JOBS_WORKER_BROKER_URL", "")
FUSION_JOBS_RETRY_MIN_BACKOFF = 0.2
FUSION_JOBS_RETRY_MAX_BACKOFF = 1.0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MEDIA_ROOT = os.environ.get("FUSION_JOBS_TEST_MEDIA", "/tmp/fusion-jobs-test-media")
DOCUMENTS_EMBEDDER = "hashing"  # fast and deterministic; one test opts into WordLlama

# Worker subprocesses of tests/integration/test_tracing.py export their spans to this file (JSON lines).
if os.environ.get("FUSION_JOBS_TEST_SPAN_FILE"):
    from tests.span_file_exporter import install_from_env

    install_from_env()
