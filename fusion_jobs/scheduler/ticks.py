"""Which due cron ticks fire: the misfire policy's decision, bounded however long the gap.

Pure arithmetic on a trigger and a clock reading (no database), so tests replay outages, clock
jumps and DST changes without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .triggers import CrontabTrigger

#: Longest ``skip_reason`` written on a skipped run.
REASON_LIMIT = 200


@dataclass
class TickPlan:
    """The misfire policy's decision for the ticks due in ``[start, now]``."""

    fire: list[datetime] = field(default_factory=list)
    skip: list[tuple[datetime, str]] = field(default_factory=list)  # recorded, oldest first
    unrecorded: int = 0  # skipped ticks counted in a reason instead of recorded one by one
    unrecorded_exact: bool = True
    next_fire: datetime | None = None


def seconds_text(delta: timedelta) -> str:
    return f"{delta.total_seconds():.0f} s"


def plan_ticks(
    trigger: CrontabTrigger,
    start: datetime,
    now: datetime,
    *,
    policy: str,
    max_lateness: float | None,
    grace: float,
    catchup_limit: int,
    record_limit: int,
) -> TickPlan:
    """Decide which due ticks fire and which are skipped (and why), bounded however long the gap.

    * ``latest`` fires the most recent due tick, ``all`` the most recent ``catchup_limit``,
      ``skip`` only a tick that is on time (no later than ``grace`` after its time);
    * any tick more than ``max_lateness`` seconds old is skipped whatever the policy.
    """
    catchup_limit = max(1, catchup_limit)
    window = trigger.recent_ticks(start, now, keep=catchup_limit + max(0, record_limit))
    plan = TickPlan(next_fire=trigger.next_after(now))
    ticks = window.recent
    if not ticks:
        return plan
    latest = ticks[-1]
    if policy == "all":
        candidates = ticks[-catchup_limit:]
    elif policy == "skip":
        candidates = [latest] if now - latest <= timedelta(seconds=grace) else []
    else:
        candidates = [latest]

    def too_late(tick: datetime) -> bool:
        return max_lateness is not None and (now - tick).total_seconds() > max_lateness

    plan.fire = [tick for tick in candidates if not too_late(tick)]
    fired = set(plan.fire)
    skipped: list[tuple[datetime, str]] = []
    for tick in ticks:
        if tick in fired:
            continue
        late = now - tick
        if too_late(tick):
            reason = f"missed by {seconds_text(late)}, over max_lateness {max_lateness:.0f} s"
        elif policy == "all":
            reason = f"missed by {seconds_text(late)}, beyond the catch-up limit of {catchup_limit} ticks (misfire=all)"
        elif policy == "skip":
            reason = f"missed by {seconds_text(late)} (misfire=skip fires no missed tick)"
        else:
            reason = f"missed by {seconds_text(late)} (misfire=latest fires only the most recent missed tick)"
        skipped.append((tick, reason))
    all_skipped = window.total - len(plan.fire)
    plan.skip = skipped[-record_limit:] if record_limit > 0 else []
    plan.unrecorded = all_skipped - len(plan.skip)
    plan.unrecorded_exact = window.exact
    if plan.unrecorded and plan.skip and window.first is not None:
        oldest, reason = plan.skip[0]
        count = f"{plan.unrecorded}" if window.exact else f"at least {plan.unrecorded}"
        summary = f"; {count} earlier missed tick(s) since {window.first:%Y-%m-%d %H:%M} UTC not recorded"
        plan.skip[0] = (oldest, (reason[: REASON_LIMIT - len(summary)] + summary)[:REASON_LIMIT])
    return plan
