"""Every setting the example's apps read beyond Django's own, with its default: one table.

``example/settings.py`` fills each from its environment variable (:func:`from_environment`, parsed
by ``example/env.py``, typed by the default); the apps read them with :func:`get`, on each access,
so ``override_settings`` and the tests' ``settings`` fixture take effect without a restart.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from example import env

DEFAULTS: dict[str, Any] = {
    # The proactive agent (example/agent/).
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
    # Documents (example/documents/): "auto" embeds with WordLlama (offline, in its wheel), else
    # hashing; "minilm" is the opt-in real model. The whole job must fit the embed budget (under its
    # 600 s cap); inline, the job runs inside the upload's request: a tight budget.
    "DOCUMENTS_EMBED_BUDGET_SECONDS": 540.0,
    "DOCUMENTS_MAX_UPLOAD_BYTES": 50 * 1024 * 1024,
    # The million-page PDF: refused at upload (the probe counts pages without reading them) and by the job.
    "DOCUMENTS_MAX_PAGES": 5000,
    "DOCUMENTS_INLINE_BUDGET_SECONDS": 60.0,
    "DOCUMENTS_INLINE_MAX_PAGES": 1000,
    # The relevance floor; None: the embedder's default (example/documents/retrieval.py).
    "DOCUMENTS_SEARCH_MIN_SCORE": None,
    # Per-user rate limits ("count/seconds") on the two actions that start work (example/core/ratelimit.py).
    "DOCUMENTS_UPLOAD_RATE_LIMIT": "20/3600",
    "SANDBOX_ENQUEUE_RATE_LIMIT": "10/60",
    # Runs that waited this long on a queue no live worker consumes are named on the pages.
    "SANDBOX_NO_WORKER_AFTER_SECONDS": 60,
}


def get(name: str) -> Any:
    """``settings.<name>``, else the default above; KeyError for a name the table does not know."""
    return getattr(settings, name, DEFAULTS[name])


def from_environment(name: str) -> Any:
    """The environment variable ``name``, typed like its default (for ``example/settings.py``)."""
    default = DEFAULTS[name]
    if isinstance(default, bool):
        return env.flag(name, default)
    if isinstance(default, int):
        return env.integer(name, default)
    if isinstance(default, float):
        return env.number(name, default)
    return env.text(name, default)
