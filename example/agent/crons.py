"""The agent's six crons, declared in one place (the seed's ``registerAgentCron``).

``runcrons`` calls ``register_agent_cron`` at start-up (listed in ``FUSION_JOBS_CRON_REGISTRARS``).
``ensure_cron`` is idempotent, so calling it on every restart changes nothing, next fire times included.
"""

from __future__ import annotations

from typing import NamedTuple

import fusion_jobs
from fusion_jobs.models import CronSchedule

from . import tasks  # noqa: F401  (registers the tasks the schedules name)


class AgentCron(NamedTuple):
    name: str
    expression: str
    task: str


#: What each does is its task's description (the docstring in ``tasks.py``).
AGENT_CRONS: tuple[AgentCron, ...] = (
    AgentCron("proactive-agent-every-minute", "* * * * *", "proactive-agent-tick"),
    AgentCron("agent-delivery-retry-every-minute", "* * * * *", "agent-delivery-retry-tick"),
    AgentCron("agent-retention-daily", "0 3 * * *", "agent-retention-tick"),
    AgentCron("agent-embedding-backfill", "*/5 * * * *", "agent-embedding-backfill-tick"),
    AgentCron("agent-memory-consolidation-daily", "30 3 * * *", "agent-memory-consolidation-tick"),
    AgentCron("agent-digest-briefing", "30 7 * * *", "agent-digest-tick"),
)


def register_agent_cron() -> list[CronSchedule]:
    """Create or update the six schedules; safe to call on every start."""
    return [fusion_jobs.ensure_cron(cron.task, cron.name, cron.expression) for cron in AGENT_CRONS]
