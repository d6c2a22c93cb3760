"""The agent's settings, with defaults, read on each access so ``override_settings`` works in tests."""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # The proactive tick's cadence (its cron is every minute): a window this long is one tick, not a catch-up.
    "AGENT_TICK_INTERVAL_SECONDS": 60,
    # The window ends this long before "now", so a document whose transaction commits a little after its
    # processed_at was stamped is still inside a later window instead of slipping behind the watermark.
    "AGENT_TICK_SETTLE_SECONDS": 5,
    # How far back the very first tick looks (there is no watermark yet).
    "AGENT_FIRST_TICK_LOOKBACK_SECONDS": 24 * 3600,
    "AGENT_DELIVERY_MAX_ATTEMPTS": 5,
    "AGENT_DELIVERY_BACKOFF_SECONDS": 60,
    "AGENT_DELIVERY_MAX_BACKOFF_SECONDS": 3600,
    "AGENT_DELIVERY_BATCH": 50,
    "AGENT_RETENTION_TICK_DAYS": 7,
    "AGENT_RETENTION_SENT_MESSAGE_DAYS": 30,
    "AGENT_RETENTION_DEAD_MESSAGE_DAYS": 90,
    "AGENT_RETENTION_MEMORY_DAYS": 180,
    "AGENT_RETENTION_BATCH": 500,
    "AGENT_RETENTION_MAX_BATCHES": 20,
    "AGENT_BACKFILL_BATCH": 256,
    "AGENT_BACKFILL_MAX_BATCHES": 8,
    "AGENT_MEMORY_MERGE_THRESHOLD": 0.95,
    "AGENT_MEMORY_SUMMARY_AFTER_DAYS": 7,
    "AGENT_MEMORY_SUMMARY_MIN": 3,
    "AGENT_MEMORY_SUMMARY_MAX": 200,
    "AGENT_MEMORY_CONSOLIDATION_WINDOW": 2000,
    "AGENT_DIGEST_HOURS": 24,
    "AGENT_FROM_EMAIL": "fusion-jobs agent <agent@localhost>",
    "SMTP_HOST": "",
    "DOCUMENTS_EMBEDDER": "auto",
}


def get(name: str) -> Any:
    """``settings.<name>``, else the default above; KeyError for a name this module does not know."""
    return getattr(settings, name, DEFAULTS[name])


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
