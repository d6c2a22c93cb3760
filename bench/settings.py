"""Settings for ``bench/compare.py``: the example project plus a no-op task app, on its own database.

PostgreSQL database ``fj_bench`` on loopback (``FJ_BENCH_DB=sqlite`` switches to an in-memory
SQLite database, for the inline benchmark). django-dramatiq is installed only here, for its
``AdminMiddleware`` peer and its ``Task`` table. It is listed *after* ``fusion_jobs``: Django
takes a management command from the first app in ``INSTALLED_APPS`` that has it, so
``manage.py rundramatiq`` stays fusion-jobs' command.
"""

from __future__ import annotations

import os

from example.settings import *  # noqa: F403
from example.settings import INSTALLED_APPS

DEBUG = False  # DEBUG keeps every SQL statement in memory
SECRET_KEY = "bench-only-not-a-secret"  # example.settings has none with DEBUG off
SECURE_SSL_REDIRECT = False  # plain HTTP on loopback
INSTALLED_APPS = [*INSTALLED_APPS, "bench.app", "django_dramatiq"]

if os.environ.get("FJ_BENCH_DB", "postgres") == "sqlite":
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("FJ_BENCH_DB_NAME", "fj_bench"),
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": "5432",
            # As example.settings: persistent connections, health-checked.
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }
    }

BENCH_BROKER_URL = os.environ.get("FJ_BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/fj_perf")
# Empty unless the harness turns jobs on (it does for itself and the fusion-jobs worker).
FUSION_JOBS_BROKER_URL = os.environ.get("FUSION_JOBS_BROKER_URL", "")

# django-dramatiq's defaults (its DEFAULT_BROKER_SETTINGS) without Prometheus, which would need
# prometheus_client and open an HTTP port in every worker.
DRAMATIQ_BROKER = {
    "BROKER": "dramatiq.brokers.rabbitmq.RabbitmqBroker",
    "OPTIONS": {"url": BENCH_BROKER_URL},
    "MIDDLEWARE": [
        "dramatiq.middleware.AgeLimit",
        "dramatiq.middleware.TimeLimit",
        "dramatiq.middleware.Callbacks",
        "dramatiq.middleware.Retries",
        "django_dramatiq.middleware.AdminMiddleware",
        "django_dramatiq.middleware.DbConnectionsMiddleware",
    ],
}
DRAMATIQ_TASKS_DATABASE = "default"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "[%(asctime)s] %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "fusion_jobs": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "example": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
