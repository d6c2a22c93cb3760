"""``Peer``: everything the harness needs to know about one compared system, declared once.

Every peer's task body is the same no-op that appends its start time to the side channel
(``bench/sidechannel.py``, one file per phase name ``p``), so the harness counts and times task
starts the same way for all of them; what differs is declared here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Variant:
    """Another way to send with the same worker (e.g. Dramatiq with confirms off), timed beside the main one."""

    key: str
    label: str
    send: Callable[[str], object]


@dataclass(frozen=True)
class Peer:
    """One compared system: its worker, its clients, how its completions are counted, and its configuration."""

    key: str  # results and JSON key, e.g. "procrastinate"
    label: str  # how the report names it
    family: str  # chart colour: "fj", "broker" (Dramatiq), "celery", "db" (PostgreSQL-queue peers)
    #: One worker command per process group (argv after the interpreter); started together for the drain.
    workers: tuple[tuple[str, ...], ...]
    #: Enqueue one run whose body marks phase ``p``.
    send: Callable[[str], object]
    config: str  # its documented configuration, as run here
    # The asymmetries the report states beside the figures:
    history: str  # what it writes to PostgreSQL per run
    durable: str  # what is durable when the enqueue call returns
    confirms: str  # RabbitMQ publisher confirms at enqueue ("no broker" for a PostgreSQL queue)
    concurrency: str  # processes and threads (or async slots) of its worker
    tracked: bool = False  # keeps run history in PostgreSQL (issue 18's "tracked peers")
    #: Its own database on the shared server, or None if it writes no rows.
    database: str | None = None
    #: RabbitMQ queue it publishes to (waited on before the drain, purged after), None for PostgreSQL queues.
    queue: str | None = None
    #: Enqueue ``size`` runs of phase ``p`` in one call (``enqueue_many``, ``batch_defer``), if it has one.
    send_batch: Callable[[str, int], object] | None = None
    #: Put N drain runs in place faster than one ``send`` each (default: batches of 1000, else ``send``).
    preload: Callable[[int], object] | None = None
    #: Waits until what the peer's client sends in the background has left it (before a phase clears
    #: the rows and the queue, so no late message lands in the next phase).
    settle: Callable[[], object] | None = None
    #: SQL giving (succeeded rows, last completion as epoch seconds) from its history; None: the body completes.
    history_sql: str | None = None
    tables: tuple[str, ...] = ()  # its rows, truncated between phases
    variants: tuple[Variant, ...] = ()
    worker_env: dict[str, str] = field(default_factory=dict)
    #: Slowest plausible drain rate, runs/s: the drain times out at 60 s + N / min_rate.
    min_rate: float = 100.0
    #: Drains ``--dd-n`` runs instead of N (an untracked peer an order of magnitude slower).
    small_n: bool = False
    #: Fewer enqueue→start samples for workers that poll (each sample waits for a poll).
    latency_samples: int | None = None
