"""Bare Dramatiq: a plain ``RabbitmqBroker`` with Dramatiq's default middleware and a no-op actor; no DB.

Worker: ``python -m dramatiq bench.peers.dramatiq_bare:broker -p 2 -t 8 -Q bench_bare``.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from bench.peers import BROKER_URL
from bench.sidechannel import mark

QUEUE = "bench_bare"
ACTOR = "bench_bare_noop"


def noop(p: str = "d") -> None:
    mark(p)


def build(*, confirm: bool) -> tuple[RabbitmqBroker, dramatiq.Actor]:
    """A broker (publisher confirms on or off) and the no-op actor declared on it."""
    built = RabbitmqBroker(url=BROKER_URL, confirm_delivery=confirm)
    return built, dramatiq.actor(noop, actor_name=ACTOR, queue_name=QUEUE, broker=built)


broker, actor = build(confirm=False)
