"""Bare Dramatiq on the same RabbitMQ: no database; publisher confirms on, and off as a variant."""

from __future__ import annotations

from bench.compare.peer import Peer, Variant
from bench.compare.services import PROCESSES, THREADED, THREADS
from bench.peers import dramatiq_bare

confirmed = dramatiq_bare.build(confirm=True)[1]


def send(p: str) -> None:
    confirmed.send(p=p)


def send_unconfirmed(p: str) -> None:
    dramatiq_bare.actor.send(p=p)


def preload(n: int) -> None:
    for _ in range(n):
        dramatiq_bare.actor.send(p="d")


PEER = Peer(
    key="dramatiq",
    label="Dramatiq",
    family="broker",
    queue=dramatiq_bare.QUEUE,
    workers=(
        (
            "-m",
            "dramatiq",
            "bench.peers.dramatiq_bare:broker",
            "-p",
            str(PROCESSES),
            "-t",
            str(THREADS),
            "-Q",
            dramatiq_bare.QUEUE,
        ),
    ),
    send=send,
    preload=preload,
    variants=(Variant("dramatiq_noconfirm", "Dramatiq, confirms off", send_unconfirmed),),
    config=f"`python -m dramatiq … -p {PROCESSES} -t {THREADS}`, default middleware and prefetch (16)",
    history="none",
    durable="the message, once RabbitMQ confirms it (confirms off: nothing waits)",
    confirms="on (off as a variant)",
    concurrency=THREADED,
)
