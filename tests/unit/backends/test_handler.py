"""The backend handler: one backend chosen from the settings, replaced inside ``use_backend()``."""

from __future__ import annotations

from typing import Any

from fusion_jobs.backends import get_backend, use_backend
from fusion_jobs.backends.broker import BrokerBackend
from fusion_jobs.backends.inline import InlineBackend
from fusion_jobs.backends.stub import StubBackend
from fusion_jobs.models import GATE_BROKER, GATE_EAGER

DOWN_URL = "amqp://guest:guest@127.0.0.1:1/"  # never contacted: choosing a backend connects nowhere


def test_the_backend_follows_the_settings(settings: Any) -> None:
    settings.FUSION_JOBS_BROKER_URL = ""
    assert type(get_backend()) is InlineBackend
    settings.FUSION_JOBS_BROKER_URL = DOWN_URL
    assert type(get_backend()) is BrokerBackend
    assert get_backend() is get_backend()  # chosen once
    settings.FUSION_JOBS_EAGER = True
    assert type(get_backend()) is InlineBackend
    stub = StubBackend()
    with use_backend(stub):
        assert get_backend() is stub
    assert type(get_backend()) is InlineBackend


def test_the_flags_describe_each_backend() -> None:
    assert (BrokerBackend.queues_runs, BrokerBackend.gate) == (True, GATE_BROKER)
    assert (StubBackend.queues_runs, StubBackend.gate) == (True, GATE_BROKER)
    assert (InlineBackend.queues_runs, InlineBackend.gate) == (False, GATE_EAGER)


def test_an_environment_change_is_seen_without_a_signal(settings: Any, monkeypatch: Any) -> None:
    for name in ("FUSION_JOBS_BROKER_URL", "FUSION_JOBS_EAGER"):
        if hasattr(settings, name):
            delattr(settings, name)
    monkeypatch.delenv("FUSION_JOBS_BROKER_URL", raising=False)
    monkeypatch.delenv("FUSION_JOBS_EAGER", raising=False)
    assert type(get_backend()) is InlineBackend
    monkeypatch.setenv("FUSION_JOBS_BROKER_URL", DOWN_URL)
    assert type(get_backend()) is BrokerBackend
