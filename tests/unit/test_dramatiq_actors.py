"""Plain Dramatiq actors as tasks, in the test process: option mapping, strict decoding, the broker URL.

Sending inline with a run row is in tests/integration/test_dramatiq_actors.py; the end-to-end path
(worker, admin, cron, import, rundramatiq) in tests/system/test_djdramatiq.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from fusion_jobs import checks
from fusion_jobs.conf import dramatiq_broker_url, jobs_settings
from fusion_jobs.dramatiq_actors import adopt, forget
from fusion_jobs.encoder import check_fields
from fusion_jobs.registry import get_task

calls: list[tuple[Any, ...]] = []


def djd_probe(a: int, b: int = 0) -> int:
    calls.append((a, b))
    return a + b


@pytest.fixture
def actor() -> Iterator[Any]:
    made = dramatiq.actor(
        djd_probe,
        broker=StubBroker(),
        actor_name="djd_probe",
        queue_name="djd-probe",
        max_retries=2,
        time_limit=5000,
        min_backoff=100,
        max_backoff=2000,
        priority=5,
        throws=(ValueError,),
    )
    assert adopt(made) is not None
    yield made
    forget("djd_probe")  # its W020 note too: test_checks expects a project without one


def _fields(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "queue_name": "djd-probe",
        "actor_name": "djd_probe",
        "args": [1, 2],
        "kwargs": {},
        "options": {},
        "message_id": "0f0f0f0f-0000-4000-8000-000000000001",
        "message_timestamp": 1,
    }
    return {**fields, **changes}


def test_actor_options_are_carried_onto_the_task(actor: Any) -> None:
    task_obj = get_task("djd_probe")
    assert get_task(actor) is task_obj  # enqueue(actor, ...) finds it too
    assert (task_obj.queue, task_obj.max_retries, task_obj.execution_timeout) == ("djd-probe", 2, 5.0)
    assert (task_obj.min_backoff, task_obj.max_backoff) == (0.1, 2.0)
    assert task_obj.priority == -5  # Dramatiq runs lower numbers first; Django's scale higher first


def test_options_that_are_not_carried_are_a_check_warning(actor: Any) -> None:
    from fusion_jobs.dramatiq_actors import check_actors

    warnings = [w for w in check_actors() if w.obj == "djd_probe"]
    assert [w.id for w in warnings] == ["fusion_jobs.W020"]
    assert "throws" in warnings[0].msg


def test_a_plain_actor_message_has_its_positional_args_bound(actor: Any) -> None:
    fields = _fields(options={"retries": 1, "traceback": "Traceback ..."})
    assert check_fields(fields, max_payload_bytes=10_000) == ""
    assert (fields["args"], fields["kwargs"], fields["options"]) == ([], {"a": 1, "b": 2}, {"retries": 1})


@pytest.mark.parametrize("option", ["time_limit", "max_retries", "max_backoff", "retry_when"])
def test_a_message_cannot_lengthen_the_actors_limits(actor: Any, option: str) -> None:
    problem = check_fields(_fields(options={option: 10**9}), max_payload_bytes=10_000)
    assert f"option(s) {option!r} not accepted" in problem


def test_a_message_whose_args_do_not_fit_is_refused(actor: Any) -> None:
    assert "too many positional arguments" in check_fields(_fields(args=[1, 2, 3]), max_payload_bytes=10_000)


@pytest.mark.parametrize(
    ("config", "url", "problem"),
    [
        (None, "", None),
        ({"BROKER": "dramatiq.brokers.rabbitmq.RabbitmqBroker", "OPTIONS": {"url": "amqp://u:p@h:1/v"}}, "amqp://u:p@h:1/v", None),
        ({"OPTIONS": {"host": "rabbit", "port": 5673, "virtual_host": "shop"}}, "amqp://guest:guest@rabbit:5673/shop", None),
        ({"BROKER": "dramatiq.brokers.redis.RedisBroker", "OPTIONS": {"url": "redis://h"}}, "", "RabbitMQ only"),
        # pika options no URL can carry: TLS (a plain amqp:// URL would send the password in clear),
        # and a cluster's parameters list (ignoring it would publish to 127.0.0.1)
        ({"OPTIONS": {"host": "rabbit", "ssl_options": object()}}, "", "'ssl_options'"),
        ({"OPTIONS": {"parameters": [{"host": "r1"}, {"host": "r2"}]}}, "", "'parameters'"),
    ],
    ids=["absent", "url", "host-options", "redis", "tls-options", "cluster-parameters"],
)  # fmt: skip
def test_dramatiq_broker_url_fallback(settings: Any, config: Any, url: str, problem: str | None) -> None:
    del settings.FUSION_JOBS_BROKER_URL
    if config is None:
        del settings.DRAMATIQ_BROKER
    else:
        settings.DRAMATIQ_BROKER = config
    found, why = dramatiq_broker_url()
    assert found == url and url == jobs_settings.BROKER_URL
    assert (why is None) if problem is None else (problem in why)
    ids = [m.id for m in checks.check_dramatiq_broker()]
    assert ids == ([] if config is None else ["fusion_jobs.E020"] if problem else ["fusion_jobs.I020"])


def test_an_explicit_broker_url_wins(settings: Any) -> None:
    settings.DRAMATIQ_BROKER = {"OPTIONS": {"url": "amqp://u:p@dramatiq:5672/v"}}
    settings.FUSION_JOBS_BROKER_URL = ""
    assert jobs_settings.BROKER_URL == "" and checks.check_dramatiq_broker() == []
