"""Dramatiq middleware, one per module; :func:`build_stack` gives every broker its stack, in order.

Two more are added by the worker process only (:mod:`fusion_jobs.worker_process`), as they serve
the process rather than a message: :class:`.relay.OutboxRelay` (the relay thread, and delayed
messages parked in the database) and :class:`.heartbeat.HeartbeatCounters`. Keeping the relay out
of this stack keeps the broker module (which imports it) off the relay's publishing path.
"""

from __future__ import annotations

from dramatiq import Middleware
from dramatiq.middleware import TimeLimit

from .db import DbConnections
from .hard_limit import HardTimeLimit
from .lifecycle import RunLifecycle
from .metrics import RunMetrics
from .single_flight import SingleFlight
from .tracing import RunTracing


def build_stack() -> list[Middleware]:
    """A fresh middleware stack for one broker.

    Order matters: Dramatiq runs ``after_*`` hooks in reverse, so DbConnections closes stale
    connections first and last, and RunLifecycle writes the outcome before the ack.
    SingleFlight comes before RunLifecycle: a run it skips never goes ``running``, and its lock
    is released only after the outcome is written. RunMetrics and RunTracing come after
    RunLifecycle: they see only attempts it started, and end before it records the outcome.
    """
    lifecycle = RunLifecycle()
    return [
        DbConnections(),
        TimeLimit(),
        HardTimeLimit(lifecycle),
        SingleFlight(),
        lifecycle,
        RunMetrics(),
        RunTracing(),
    ]
