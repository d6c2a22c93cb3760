from __future__ import annotations

from django.core import checks

from fusion_jobs.checks import (
    check_broker_url,
    check_eager_in_production,
    check_no_pickle,
    check_settings_values,
    check_task_timeouts,
)


def ids(messages):
    return [m.id for m in messages]


def test_valid_configuration_has_no_messages(settings):
    settings.FUSION_JOBS_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"
    assert checks.run_checks(tags=["fusion_jobs"]) == []


def test_malformed_broker_url_is_e001_and_masked(settings):
    settings.FUSION_JOBS_BROKER_URL = "redis://user:topsecret@127.0.0.1:6379/0"
    [error] = check_broker_url()
    assert error.id == "fusion_jobs.E001"
    assert "topsecret" not in error.msg and "***" in error.msg
    assert "amqp://" in error.hint
    settings.FUSION_JOBS_BROKER_URL = "amqp://guest:guest@127.0.0.1:notaport/"
    assert ids(check_broker_url()) == ["fusion_jobs.E001"]


def test_pickle_encoder_is_e002(settings):
    settings.DRAMATIQ_ENCODER = "dramatiq.encoder.PickleEncoder"
    assert ids(check_no_pickle()) == ["fusion_jobs.E002"]


def test_bad_values(settings):
    settings.FUSION_JOBS_ON_PUBLISH_ERROR = "retry"
    settings.FUSION_JOBS_EAGER = "maybe"
    settings.FUSION_JOBS_THREADS = 0
    assert ids(check_settings_values()) == ["fusion_jobs.E003", "fusion_jobs.E004", "fusion_jobs.E005"]


def test_eager_with_debug_off_warns(settings):
    settings.FUSION_JOBS_EAGER = True
    settings.DEBUG = False
    assert ids(check_eager_in_production()) == ["fusion_jobs.W001"]
    settings.DEBUG = True
    assert check_eager_in_production() == []


def test_timeout_near_consumer_timeout_warns(settings):
    settings.FUSION_JOBS_CONSUMER_TIMEOUT = 100
    warnings = check_task_timeouts()
    assert "fusion_jobs.W002" in ids(warnings)
    assert any(w.obj == "t-slow" for w in warnings)  # 60 s * 2 >= 100 s
    assert not any(w.obj == "t-record" for w in warnings)  # 30 s
