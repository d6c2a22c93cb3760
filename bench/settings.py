"""Settings for ``python -m bench.compare``: the example project, a no-op task app and every peer's app.

PostgreSQL database ``fj_bench`` on loopback, or ``FJ_BENCH_DB_NAME`` (each peer with history has
its own database on the same server); ``FJ_BENCH_DB=sqlite`` switches to an in-memory SQLite
database, for the inline benchmark. The peers' apps are installed only here. django-dramatiq is
listed *after* ``fusion_jobs``: Django takes a management command from the first app in
``INSTALLED_APPS`` that has it, so ``manage.py rundramatiq`` stays fusion-jobs' command. Each peer
keeps its documented defaults; the few settings below are the ones its docs say to set.
"""

from __future__ import annotations

import os

from example.settings import *  # noqa: F403
from example.settings import INSTALLED_APPS, TASKS

DEBUG = False  # DEBUG keeps every SQL statement in memory
SECRET_KEY = "bench-only-not-a-secret"  # example.settings has none with DEBUG off
SECURE_SSL_REDIRECT = False  # plain HTTP on loopback
INSTALLED_APPS = [
    *INSTALLED_APPS,
    "bench.app",
    "django_dramatiq",
    "procrastinate.contrib.django",
    "django_celery_results",
    "django_tasks_db",
    "django_q",
]

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

# procrastinate: its Django contrib on the default database; the task module is named, not discovered.
PROCRASTINATE_IMPORT_PATHS = ["bench.peers.procrastinate_tasks"]

# Celery + django-celery-results (bench/peers/celery_results.py reads these, namespace CELERY):
# results in the database, a STARTED row at task start and the extended fields, JSON only.
CELERY_BROKER_URL = BENCH_BROKER_URL
CELERY_RESULT_BACKEND = "django-db"
CELERY_TASK_TRACK_STARTED = True
CELERY_RESULT_EXTENDED = True
CELERY_TASK_DEFAULT_QUEUE = "bench_celery_results"
CELERY_TASK_SERIALIZER = CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# django-tasks-db: its DatabaseBackend beside fusion-jobs' backend.
TASKS = {**TASKS, "db": {"BACKEND": "django_tasks_db.backend.DatabaseBackend"}}

# django-q2 on its ORM broker; 2 worker processes (its default is the CPU count, 2 here);
# save_limit 0 keeps every successful task (its default, 250, keeps only the last 250); its logs at
# WARNING, as every other peer's (at INFO it logs a line per enqueue).
Q_CLUSTER = {
    "name": "fj_bench",
    "orm": "default",
    "workers": 2,
    "save_limit": 0,
    "timeout": 60,
    "retry": 120,
    "log_level": "WARNING",
}

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
