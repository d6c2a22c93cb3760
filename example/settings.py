"""Settings of the fusion-jobs example project.

Runs with no environment at all: SQLite in the repository and jobs inline. ``DATABASE_URL``
(``postgres://...``) switches the database and ``FUSION_JOBS_BROKER_URL`` (``amqp://...``)
turns the background workers on.

Safe by default: ``DEBUG`` is off unless ``DJANGO_DEBUG=1`` (``scripts/run-example.sh`` sets it for
local development), and with ``DEBUG`` off there is no fallback ``SECRET_KEY``: the web process refuses
to start without ``DJANGO_SECRET_KEY`` (``example/wsgi.py``). Production settings (``DEBUG`` off) pass
``manage.py check --deploy``; README "Deploying" lists every variable.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url

from example import env
from example.core.conf import DEFAULTS, from_environment

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env.flag("DJANGO_DEBUG", False)
#: Used only with DEBUG on (local development). With DEBUG off, an unset DJANGO_SECRET_KEY leaves
#: SECRET_KEY empty: Django then refuses anything that signs, and example/wsgi.py refuses to serve.
DEV_SECRET_KEY = "insecure-development-only-key-never-used-with-debug-off"
SECRET_KEY = env.text("DJANGO_SECRET_KEY") or (DEV_SECRET_KEY if DEBUG else "")
ALLOWED_HOSTS = env.names("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env.names("DJANGO_CSRF_TRUSTED_ORIGINS")

# HTTPS: on by default with DEBUG off (behind a TLS proxy, set DJANGO_SECURE_PROXY_SSL_HEADER=1 so a request
# that came in over HTTPS is not redirected again). DJANGO_HTTPS=0 is for plain HTTP on localhost only (the
# compose file's default), and then check --deploy rightly warns about the cookies.
HTTPS = env.flag("DJANGO_HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env.integer("DJANGO_HSTS_SECONDS", 31536000) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.flag("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env.flag("DJANGO_HSTS_PRELOAD", False)
if env.flag("DJANGO_SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Submitting a domain to the browsers' HSTS preload list is a decision per domain: opt in with
# DJANGO_HSTS_PRELOAD=1; until then check --deploy's reminder about it is silenced.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
# The health check (docker-compose.yml) is probed over plain HTTP from inside the container.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# Error pages (the DEBUG page included) mask passwords inside URLs and connection settings.
DEFAULT_EXCEPTION_REPORTER_FILTER = "example.core.debug.PasswordMaskingFilter"

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

# Django's Tasks framework (django.tasks, or the django-tasks backport on 5.2) runs on fusion-jobs:
# example/core/tasks.py declares one job with @task, and the sandbox enqueues it with .enqueue().
TASKS = {"default": {"BACKEND": "fusion_jobs.backends.django_tasks.FusionJobsBackend"}}

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
    "default": dj_database_url.parse(
        env.text("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=env.integer("DB_CONN_MAX_AGE", 60),
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
STATIC_ROOT = Path(env.text("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
if STATIC_ROOT.is_dir():
    # Collected (the image runs collectstatic): gunicorn serves them through WhiteNoise. Without DEBUG,
    # runserver serves none: run collectstatic first, or DJANGO_DEBUG=1 for local development.
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")
STATICFILES_DIRS = [BASE_DIR / "example" / "static"]
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.text("MEDIA_ROOT", str(BASE_DIR / "media")))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "login"  # not the admin's: it turns away users who are not staff
LOGIN_REDIRECT_URL = LOGOUT_REDIRECT_URL = "home"

# fusion-jobs: empty broker URL means jobs run inline (read from the environment).
FUSION_JOBS_BROKER_URL = env.text("FUSION_JOBS_BROKER_URL")
# runcrons calls these at start-up to declare the crons (the agent's six).
FUSION_JOBS_CRON_REGISTRARS = ["example.agent.crons.register_agent_cron"]

# Mail, degrading gracefully: SMTP_HOST set means the agent's outbox is sent through SMTP;
# unset means messages are logged and held (status "held"), never sent and never lost.
SMTP_HOST = from_environment("SMTP_HOST")
if SMTP_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = SMTP_HOST
    EMAIL_PORT = env.integer("SMTP_PORT", 587)
    EMAIL_HOST_USER = env.text("SMTP_USER")
    EMAIL_HOST_PASSWORD = env.text("SMTP_PASSWORD")
    EMAIL_USE_TLS = env.flag("SMTP_USE_TLS", True)
    EMAIL_TIMEOUT = 10
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env.text("SMTP_FROM", DEFAULTS["AGENT_FROM_EMAIL"])
AGENT_FROM_EMAIL = DEFAULT_FROM_EMAIL

# The apps' own settings (defaults and what each means: example/core/conf.py).
AGENT_RETENTION_TICK_DAYS = from_environment("AGENT_RETENTION_TICK_DAYS")
AGENT_RETENTION_SENT_MESSAGE_DAYS = from_environment("AGENT_RETENTION_SENT_MESSAGE_DAYS")
AGENT_RETENTION_DEAD_MESSAGE_DAYS = from_environment("AGENT_RETENTION_DEAD_MESSAGE_DAYS")
AGENT_RETENTION_MEMORY_DAYS = from_environment("AGENT_RETENTION_MEMORY_DAYS")
DOCUMENTS_EMBEDDER = from_environment("DOCUMENTS_EMBEDDER")
DOCUMENTS_EMBED_BUDGET_SECONDS = from_environment("DOCUMENTS_EMBED_BUDGET_SECONDS")
DOCUMENTS_MAX_UPLOAD_BYTES = from_environment("DOCUMENTS_MAX_UPLOAD_BYTES")
DOCUMENTS_MAX_PAGES = from_environment("DOCUMENTS_MAX_PAGES")
DOCUMENTS_INLINE_BUDGET_SECONDS = from_environment("DOCUMENTS_INLINE_BUDGET_SECONDS")
DOCUMENTS_INLINE_MAX_PAGES = from_environment("DOCUMENTS_INLINE_MAX_PAGES")
DOCUMENTS_UPLOAD_RATE_LIMIT = from_environment("DOCUMENTS_UPLOAD_RATE_LIMIT")
SANDBOX_ENQUEUE_RATE_LIMIT = from_environment("SANDBOX_ENQUEUE_RATE_LIMIT")
SANDBOX_NO_WORKER_AFTER_SECONDS = from_environment("SANDBOX_NO_WORKER_AFTER_SECONDS")
# Request size: an oversized upload is refused from its Content-Length, before the body is read
# (example/documents/uploads.py); other request bodies stay under Django's 2.5 MB default.
FILE_UPLOAD_HANDLERS = [
    "example.documents.uploads.RequestSizeLimitHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440

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
