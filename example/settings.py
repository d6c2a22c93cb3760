"""Settings of the fusion-jobs example project.

Runs with no environment at all: SQLite in the repository and jobs inline. ``DATABASE_URL``
(``postgres://...``) switches the database and ``FUSION_JOBS_BROKER_URL`` (``amqp://...``)
turns the background workers on.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-example-key-change-me")
DEBUG = os.environ.get("DJANGO_DEBUG", "1").lower() in ("1", "true", "yes", "on")
ALLOWED_HOSTS = [
    h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",") if h
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "fusion_jobs",
    "example.core",
    "example.documents",
    "example.agent",
    "example.sandbox",
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

ROOT_URLCONF = "example.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "example" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "example.core.context_processors.jobs_status",
            ],
        },
    },
]

WSGI_APPLICATION = "example.wsgi.application"

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Inline jobs and the dev server write from several threads: wait for the lock, don't fail.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "example" / "static"]
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "media"))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "admin:login"

# fusion-jobs: empty broker URL means jobs run inline (read from the environment).
FUSION_JOBS_BROKER_URL = os.environ.get("FUSION_JOBS_BROKER_URL", "")
# runcrons calls these at start-up to declare the crons (the agent's six).
FUSION_JOBS_CRON_REGISTRARS = ["example.agent.crons.register_agent_cron"]

# Mail, the seed's graceful degradation: SMTP_HOST set means the agent's outbox is sent through SMTP;
# unset means messages are logged and held (status "held"), never sent and never lost.
SMTP_HOST = os.environ.get("SMTP_HOST", "")
if SMTP_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = SMTP_HOST
    EMAIL_PORT = int(os.environ.get("SMTP_PORT", "587"))
    EMAIL_HOST_USER = os.environ.get("SMTP_USER", "")
    EMAIL_HOST_PASSWORD = os.environ.get("SMTP_PASSWORD", "")
    EMAIL_USE_TLS = os.environ.get("SMTP_USE_TLS", "1").lower() in ("1", "true", "yes", "on")
    EMAIL_TIMEOUT = 10
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = os.environ.get("SMTP_FROM", "fusion-jobs agent <agent@localhost>")
AGENT_FROM_EMAIL = DEFAULT_FROM_EMAIL

# The proactive agent: retention windows (days) and batch sizes; see example/agent/conf.py for the rest.
AGENT_RETENTION_TICK_DAYS = int(os.environ.get("AGENT_RETENTION_TICK_DAYS", "7"))
AGENT_RETENTION_SENT_MESSAGE_DAYS = int(os.environ.get("AGENT_RETENTION_SENT_MESSAGE_DAYS", "30"))
AGENT_RETENTION_DEAD_MESSAGE_DAYS = int(os.environ.get("AGENT_RETENTION_DEAD_MESSAGE_DAYS", "90"))
AGENT_RETENTION_MEMORY_DAYS = int(os.environ.get("AGENT_RETENTION_MEMORY_DAYS", "180"))
AGENT_RETENTION_BATCH = 500

# Documents demo (/documents/): "auto" embeds with WordLlama (offline, in its wheel), else hashing; "minilm"
# is the opt-in real model. The whole job must fit the embed budget, which sits under its 600 s cap.
DOCUMENTS_EMBEDDER = os.environ.get("DOCUMENTS_EMBEDDER", "auto")
DOCUMENTS_EMBED_BUDGET_SECONDS = float(os.environ.get("DOCUMENTS_EMBED_BUDGET_SECONDS", "540"))
DOCUMENTS_MAX_UPLOAD_BYTES = int(os.environ.get("DOCUMENTS_MAX_UPLOAD_BYTES", str(50 * 1024 * 1024)))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "[%(asctime)s] %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "fusion_jobs": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "example": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
