"""A minimal django-dramatiq project, its settings written as django-dramatiq's README shows.

Run only by tests/system/test_djdramatiq.py, in subprocesses, on its own database
(``DJD_DB``) and the test RabbitMQ (``DJD_BROKER_URL``).
"""

from __future__ import annotations

import os

SECRET_KEY = "djdramatiq-tests-only"
DEBUG = True
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "tests.djdramatiq_project.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django_dramatiq",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "tests.djdramatiq_project.shop",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("DJD_DB", "djdramatiq"),
        "USER": os.environ.get("PGUSER", "postgres"),
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
    }
}

# As django-dramatiq's README: the broker, its middleware, the tasks database.
DRAMATIQ_BROKER = {
    "BROKER": os.environ.get("DJD_BROKER_CLASS", "dramatiq.brokers.rabbitmq.RabbitmqBroker"),
    "OPTIONS": {"url": os.environ.get("DJD_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")}
    if "DJD_BROKER_CLASS" not in os.environ  # a test's non-RabbitMQ broker takes no URL
    else {},
    "MIDDLEWARE": [
        "dramatiq.middleware.AgeLimit",
        "dramatiq.middleware.TimeLimit",
        "dramatiq.middleware.Callbacks",
        "dramatiq.middleware.Retries",
        "django_dramatiq.middleware.DbConnectionsMiddleware",
        "django_dramatiq.middleware.AdminMiddleware",
    ],
}
DRAMATIQ_TASKS_DATABASE = "default"
DRAMATIQ_AUTODISCOVER_MODULES = ["tasks"]

# Django's LOGGING, so `rundramatiq --skip-logging` shows its own format.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"djd": {"format": "DJDLOG %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "djd"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {"pika": {"level": "WARNING"}},
}
