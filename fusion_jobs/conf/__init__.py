"""Every ``FUSION_JOBS_*`` setting, read on each access (``jobs_settings.<NAME>``).

A setting is looked up in Django settings first, then in the environment variable of the same
name, then falls back to its default in the table (``conf/table.py``). Reading on each access (as
procrastinate's settings object does) keeps ``override_settings`` and per-test environment
changes working. Values are validated by system checks (``fusion_jobs.checks``), not here, so a
bad value never breaks an import: each ``Setting`` declares its type and range, and the checks
report every value that falls outside it.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings as django_settings

from .django_dramatiq import RABBITMQ_BROKERS, dramatiq_broker_url
from .setting import Setting, coerce
from .table import PUBLISH_ERROR_POLICIES, QUEUE_NAME, SETTINGS

__all__ = [
    "PREFIX",
    "PUBLISH_ERROR_POLICIES",
    "QUEUE_NAME",
    "RABBITMQ_BROKERS",
    "SETTINGS",
    "JobsSettings",
    "Setting",
    "broker_queue",
    "dramatiq_broker_url",
    "jobs_settings",
    "logical_queue",
    "queue_namespace",
]

PREFIX = "FUSION_JOBS_"


class JobsSettings:
    """Attribute access resolves ``FUSION_JOBS_<NAME>`` on every read."""

    def __getattr__(self, name: str) -> Any:
        try:
            spec = SETTINGS[name]
        except KeyError:
            raise AttributeError(f"unknown fusion_jobs setting {name!r}") from None
        full = PREFIX + name
        if hasattr(django_settings, full):
            raw = getattr(django_settings, full)
        elif full in os.environ:
            raw = os.environ[full]
        elif name == "BROKER_URL":
            return dramatiq_broker_url()[0]  # a django-dramatiq project's RabbitMQ, or ""
        else:
            return spec.default
        if raw is None:
            return spec.default
        return coerce(raw, spec.kind)

    def valid(self, name: str) -> bool:
        """Whether the value read is valid as the table declares (the system checks report the others)."""
        return SETTINGS[name].problem(getattr(self, name)) is None

    def source(self, name: str) -> str:
        full = PREFIX + name
        if hasattr(django_settings, full):
            return "settings"
        if full in os.environ:
            return "environment"
        if name == "BROKER_URL" and dramatiq_broker_url()[0]:
            return "DRAMATIQ_BROKER"
        return "default"


jobs_settings = JobsSettings()


def queue_namespace() -> str:
    """``FUSION_JOBS_QUEUE_NAMESPACE`` when valid, else empty (the system check reports a bad one)."""
    return str(jobs_settings.QUEUE_NAMESPACE) if jobs_settings.valid("QUEUE_NAMESPACE") else ""


def broker_queue(queue: str) -> str:
    """The RabbitMQ queue a logical queue name lives in: ``<namespace>.<queue>``, or the name itself.

    Everything that declares, publishes to or consumes from a queue uses this name; run rows,
    task declarations and the admin keep the logical one.
    """
    namespace = queue_namespace()
    return f"{namespace}.{queue}" if namespace else queue


def logical_queue(name: str) -> str:
    """The inverse of :func:`broker_queue` (a name outside the namespace is returned as is)."""
    namespace = queue_namespace()
    if namespace and name.startswith(namespace + "."):
        return name[len(namespace) + 1 :]
    return name
