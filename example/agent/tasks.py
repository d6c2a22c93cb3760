"""The agent's tasks (autodiscovered): the six crons' and the per-user digest's; each a thin wrapper.

All are single-flight: two runs of the same cron never overlap (the plugin records the skipped one).
The proactive tick also guards itself with a row lock, so its correctness does not depend on that.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone as dj_timezone  # one task takes an argument named timezone

import fusion_jobs

from . import delivery, digest, memory, retention, ticks


@fusion_jobs.task(name="proactive-agent-tick", single_flight=True, execution_timeout="10m", max_retries=0)
def proactive_agent_tick() -> dict[str, Any]:
    """Look at what happened since the last tick: remember it and notify the document's owner."""
    return ticks.run_tick(run_id=fusion_jobs.current_run_id() or "")


@fusion_jobs.task(name="agent-delivery-retry-tick", single_flight=True, execution_timeout="5m", max_retries=0)
def agent_delivery_retry_tick() -> dict[str, Any]:
    """Send due outbox messages with backoff, or hold them when SMTP_HOST is unset."""
    return delivery.deliver_due(now=dj_timezone.now())


@fusion_jobs.task(name="agent-retention-tick", single_flight=True, execution_timeout="10m", max_retries=1)
def agent_retention_tick() -> dict[str, Any]:
    """Delete ticks, delivered messages and memories past their retention windows."""
    return retention.purge(now=dj_timezone.now())


@fusion_jobs.task(
    name="agent-embedding-backfill-tick", single_flight=True, execution_timeout="4m", max_retries=0
)
def agent_embedding_backfill_tick() -> dict[str, Any]:
    """Embed chunks and memories without a vector from the current embedder, a bounded batch per run."""
    return memory.backfill_embeddings()


@fusion_jobs.task(
    name="agent-memory-consolidation-tick", single_flight=True, execution_timeout="10m", max_retries=1
)
def agent_memory_consolidation_tick() -> dict[str, Any]:
    """Merge near-duplicate memories and roll old ones up into summaries."""
    return memory.consolidate_memories(now=dj_timezone.now())


@fusion_jobs.task(name="agent-digest-tick", single_flight=True, execution_timeout="10m", max_retries=2)
def agent_digest_tick() -> dict[str, Any]:
    """Queue each user's daily briefing (at most one per user and day)."""
    return digest.queue_digests(now=dj_timezone.now())


@fusion_jobs.task(
    name="agent-user-digest-tick",
    single_flight=lambda user_id, timezone="UTC": f"user-{user_id}",
    execution_timeout="5m",
    max_retries=2,
)
def agent_user_digest_tick(user_id: int, timezone: str = "UTC") -> dict[str, Any]:
    """Queue one user's briefing at the time they chose (their runtime schedule, ``schedules``)."""
    return digest.queue_digests(now=dj_timezone.now(), user_id=user_id, zone=timezone)
