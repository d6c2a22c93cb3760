"""The ``runcrons`` leader lease: one row, renewed by its holder, taken over when it expires.

It is an optimisation: standbys idle on one cheap UPDATE per poll instead of all evaluating every
schedule. Correctness never depends on it, because every tick is claimed with a unique row
(``fj_run_one_per_tick``), so two processes that both believe they lead still fire a tick once.

It is a row, not a session advisory lock: an advisory lock is silently dropped when Django
recycles the connection or a transaction-pooling proxy (pgbouncer) hands the session to someone
else. Expiry is compared with the database's clock (``NOW()``), so clock skew between hosts
cannot make two processes disagree about whether the lease has expired.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import DateTimeField, ExpressionWrapper, Q, Value
from django.db.models.functions import Now

from ..models import WorkerLease
from ..recording import db_alias

logger = logging.getLogger("fusion_jobs.crons")

LEASE_NAME = "runcrons"


def _expiry(ttl: float) -> ExpressionWrapper:
    return ExpressionWrapper(Now() + Value(timedelta(seconds=ttl)), output_field=DateTimeField())


class Lease:
    """A named lease held by this process; :meth:`acquire` both takes and renews it."""

    def __init__(self, name: str = LEASE_NAME, *, ttl: float = 15.0, holder: str | None = None) -> None:
        self.name = name
        self.ttl = float(ttl)
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.held = False

    def acquire(self) -> bool:
        """Renew the lease if this process holds it, take it if it expired or never existed.

        One conditional UPDATE: under PostgreSQL's row lock only one of several standbys racing
        for an expired lease matches (the others re-check the condition and find it taken).
        """
        alias = db_alias()
        taken = (
            WorkerLease.objects.using(alias)
            .filter(name=self.name)
            .filter(Q(holder=self.holder) | Q(expires_at__lt=Now()))
            .update(holder=self.holder, expires_at=_expiry(self.ttl))
        )
        if not taken and not WorkerLease.objects.using(alias).filter(name=self.name).exists():
            try:
                with transaction.atomic(using=alias):
                    WorkerLease.objects.using(alias).create(
                        name=self.name, holder=self.holder, expires_at=_expiry(self.ttl)
                    )
                taken = 1
            except IntegrityError:
                taken = 0
        was_held, self.held = self.held, bool(taken)
        if self.held and not was_held:
            logger.info(
                "runcrons %s is now the leader (lease %r, ttl %.0f s)", self.holder, self.name, self.ttl
            )
        elif was_held and not self.held:
            logger.warning(
                "runcrons %s lost the lease %r to %s", self.holder, self.name, self.current_holder()
            )
        return self.held

    def release(self) -> None:
        """Give the lease up (clean shutdown), so a standby takes over at its next poll."""
        WorkerLease.objects.using(db_alias()).filter(name=self.name, holder=self.holder).delete()
        if self.held:
            logger.info("runcrons %s released the lease %r", self.holder, self.name)
        self.held = False

    def current_holder(self) -> str | None:
        row = WorkerLease.objects.using(db_alias()).filter(name=self.name).values("holder").first()
        return row["holder"] if row else None

    def expires_at(self) -> datetime | None:
        row = WorkerLease.objects.using(db_alias()).filter(name=self.name).values("expires_at").first()
        return row["expires_at"] if row else None
