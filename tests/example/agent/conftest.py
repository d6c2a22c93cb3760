"""Fixtures for the agent: a fixed clock, users, documents in any state, and a fast embedder."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def t0() -> datetime:
    """A fixed "now" the tests move by hand: the agent's functions take it instead of reading the clock."""
    return T0


@pytest.fixture(autouse=True)
def agent_settings(settings: Any) -> Any:
    """Defaults pinned so a change in example/settings.py does not silently change what tests check."""
    settings.AGENT_TICK_INTERVAL_SECONDS = 60
    settings.AGENT_TICK_SETTLE_SECONDS = 5
    settings.AGENT_FIRST_TICK_LOOKBACK_SECONDS = 3600
    settings.AGENT_DELIVERY_MAX_ATTEMPTS = 3
    settings.AGENT_DELIVERY_BACKOFF_SECONDS = 60
    settings.AGENT_DELIVERY_MAX_BACKOFF_SECONDS = 3600
    settings.DOCUMENTS_EMBEDDER = "hashing"
    settings.SMTP_HOST = ""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return settings


@pytest.fixture
def smtp_on(settings: Any) -> Any:
    """The SMTP-configured case, delivering into Django's locmem outbox instead of a real server."""
    settings.SMTP_HOST = "smtp.example.test"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return settings


_seq = itertools.count(1)


@pytest.fixture
def make_user(django_user_model: Any) -> Callable[..., Any]:
    def make(name: str | None = None, email: str | None = "", **extra: Any) -> Any:
        name = name or f"user{next(_seq)}"
        return django_user_model.objects.create_user(
            username=name, email=f"{name}@example.test" if email == "" else (email or ""), **extra
        )

    return make


@pytest.fixture
def make_document() -> Callable[..., Any]:
    from example.documents.models import Document, DocumentStatus

    def make(
        owner: Any = None,
        *,
        title: str | None = None,
        status: str = DocumentStatus.READY,
        processed_at: datetime | None = None,
        **extra: Any,
    ) -> Document:
        n = next(_seq)
        defaults: dict[str, Any] = (
            {"page_count": 3, "chunk_count": 5} if status == DocumentStatus.READY else {}
        )
        return Document.objects.create(
            owner=owner,
            title=title or f"Report {n}",
            file=f"documents/test/report-{n}.pdf",
            status=status,
            processed_at=processed_at,
            **{**defaults, **extra},
        )

    return make


@pytest.fixture
def make_state() -> Callable[..., Any]:
    """An agent that last ticked at ``at`` (its watermark is ``at`` minus the settle time)."""
    from example.agent.models import AgentState
    from example.agent.ticks import AGENT_NAME

    def make(at: datetime) -> AgentState:
        return AgentState.objects.create(
            name=AGENT_NAME, watermark=at - timedelta(seconds=5), last_tick_at=at
        )

    return make
