"""The agent's mailer gate; its settings are read with ``get`` (defaults in ``example/core/conf.py``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from example.core.conf import get

__all__ = ["get", "mailer_enabled", "mailer_status"]


def mailer_enabled() -> bool:
    """The seed's mailer gate: mail is sent only when ``SMTP_HOST`` is configured."""
    return bool(str(get("SMTP_HOST") or "").strip())


def mailer_status() -> dict[str, Any]:
    """What the sandbox page shows about the mailer; never includes the SMTP password."""
    if mailer_enabled():
        return {
            "mode": "smtp",
            "host": str(get("SMTP_HOST")),
            "port": getattr(settings, "EMAIL_PORT", None),
            "reason": "SMTP_HOST is set: the delivery cron sends mail through SMTP",
        }
    return {
        "mode": "held",
        "host": None,
        "port": None,
        "reason": "SMTP_HOST is unset: messages are logged and held, never sent and never lost",
    }
