"""Settings of the library's tests: fusion_jobs, the test apps and the contrib apps its admin needs.

Nothing from ``example/``: the example's tests run on ``tests/example/settings.py``. PostgreSQL and
RabbitMQ on loopback (the real services), jobs inline by default: tests that need the broker turn it
on with ``override_settings`` / the ``broker_settings`` fixture. ``FUSION_JOBS_TEST_DB`` names the
database for worker subprocesses that must share the test database.
"""

from __future__ import annotations

import os

SECRET_KEY = "tests-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",  # the browser tests' live server serves the admin's stylesheets
    "fusion_jobs",
    "tests.testapp",
    "tests.opsapp",
    "tests.fjdt",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "tests.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

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
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
MEDIA_ROOT = os.environ.get("FUSION_JOBS_TEST_MEDIA", "/tmp/fusion-jobs-test-media")

# Django's Tasks framework on fusion-jobs (tests/integration/backends/test_django_tasks*.py).
TASKS = {"default": {"BACKEND": "fusion_jobs.backends.django_tasks.FusionJobsBackend"}}
# Worker subprocesses started by the tests pass their broker here; the test process starts inline.
FUSION_JOBS_BROKER_URL = os.environ.get("FUSION_JOBS_WORKER_BROKER_URL", "")
FUSION_JOBS_RETRY_MIN_BACKOFF = 0.2
FUSION_JOBS_RETRY_MAX_BACKOFF = 1.0

# A worker subprocess logs fusion_jobs records as a project's LOGGING typically does (tests read its output).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "[%(asctime)s] %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"fusion_jobs": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}

# Worker subprocesses of tests/integration/test_tracing.py export their spans to this file (JSON lines).
if os.environ.get("FUSION_JOBS_TEST_SPAN_FILE"):
    from tests.span_file_exporter import install_from_env

    install_from_env()
