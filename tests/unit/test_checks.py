from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core import checks

from fusion_jobs.checks import (
    check_broker_url,
    check_eager_in_production,
    check_no_pickle,
    check_settings_values,
    check_shared_vhost,
    check_task_timeouts,
)
from fusion_jobs.conf import PREFIX, SETTINGS

ROOT = Path(__file__).resolve().parents[2]


def ids(messages):
    return [m.id for m in messages]


def test_valid_configuration_has_no_messages(settings):
    settings.FUSION_JOBS_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/fj"
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
    assert sorted(ids(check_settings_values())) == [
        "fusion_jobs.E003",
        "fusion_jobs.E004",
        "fusion_jobs.E005",
    ]


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


def _bad_values(name):
    """Values no declaration of the setting's kind may accept: (value, how it is set)."""
    spec = SETTINGS[name]
    if spec.kind is bool:
        return [("maybe", "env"), ("maybe", "settings"), (2, "settings")]
    if spec.kind in (int, float):
        bad = [("abc", "env"), ("1e999", "env"), ("12abc", "settings"), (True, "settings")]
        if spec.low is not None:
            bad.append((spec.low if spec.low_open else spec.low - 1, "settings"))
        if spec.high is not None:
            bad.append((spec.high + 1, "settings"))
        if spec.kind is int:
            bad.append((1.5, "settings"))
        return bad
    if spec.kind is tuple:
        return [(5, "settings"), (["!! not valid !!"], "settings"), ("!! not valid !!", "env")]
    return [(123, "settings"), ("!! not valid !!", "env"), ("!! not valid !!", "settings")]


@pytest.mark.parametrize("name", list(SETTINGS))
def test_every_setting_declares_a_range(name):
    """A new setting must say what a valid value is (numbers a bound, strings and lists a rule)."""
    assert SETTINGS[name].constrained, f"{PREFIX}{name} declares no range in conf.SETTINGS"


@pytest.mark.parametrize("name", list(SETTINGS))
def test_every_setting_rejects_a_bad_value_with_an_error_and_a_hint(name, settings, monkeypatch):
    for value, how in _bad_values(name):
        if hasattr(settings, PREFIX + name):
            delattr(settings, PREFIX + name)
        monkeypatch.delenv(PREFIX + name, raising=False)
        if how == "env":
            monkeypatch.setenv(PREFIX + name, value)
        else:
            setattr(settings, PREFIX + name, value)
        found = [m for m in checks.run_checks(tags=["fusion_jobs"]) if f"{PREFIX}{name}" in m.msg]
        errors = [m for m in found if m.level >= checks.ERROR]
        assert len(errors) == 1, f"{PREFIX}{name}={value!r} ({how}): {found}"
        [error] = errors
        assert error.id.startswith("fusion_jobs.E0"), error.id
        assert error.hint and "remove it for the default" in error.hint
        if how == "env":
            assert "(from the environment)" in error.msg


def test_every_setting_default_is_valid():
    for name, spec in SETTINGS.items():
        assert spec.problem(spec.default) is None, name


def test_check_ids_are_stable(settings):
    settings.FUSION_JOBS_BROKER_URL = "http://x"
    settings.FUSION_JOBS_ON_PUBLISH_ERROR = "retry"
    settings.FUSION_JOBS_EAGER = "maybe"
    settings.FUSION_JOBS_CONSUMER_TIMEOUT = "abc"
    settings.FUSION_JOBS_DEFAULT_QUEUE = "bad queue"
    settings.FUSION_JOBS_TASK_MODULES = ["not a module"]
    found = {m.msg.split(" ")[0]: m.id for m in checks.run_checks(tags=["fusion_jobs"])}
    assert found == {
        "FUSION_JOBS_BROKER_URL": "fusion_jobs.E001",
        "FUSION_JOBS_ON_PUBLISH_ERROR": "fusion_jobs.E003",
        "FUSION_JOBS_EAGER": "fusion_jobs.E004",
        "FUSION_JOBS_CONSUMER_TIMEOUT": "fusion_jobs.E005",
        "FUSION_JOBS_DEFAULT_QUEUE": "fusion_jobs.E006",
        "FUSION_JOBS_TASK_MODULES": "fusion_jobs.E007",
    }


def test_zero_retention_is_allowed_as_prunejobruns_allows_days_0(settings):
    settings.FUSION_JOBS_RUN_RETENTION_DAYS = 0
    assert check_settings_values() == []
    settings.FUSION_JOBS_RUN_RETENTION_DAYS = -1
    assert ids(check_settings_values()) == ["fusion_jobs.E005"]


def test_retry_min_above_max_warns(settings):
    settings.FUSION_JOBS_RETRY_MIN_BACKOFF = 60
    settings.FUSION_JOBS_RETRY_MAX_BACKOFF = 10
    assert ids(check_settings_values()) == ["fusion_jobs.W004"]


@pytest.mark.parametrize(
    ("url", "namespace", "warns"),
    [
        ("amqp://u:p@h:5672/", "", True),
        ("amqp://u:p@h:5672", "", True),
        ("amqp://u:p@h:5672/%2F", "", True),
        ("amqp://u:p@h:5672/", "shop", False),
        ("amqp://u:p@h:5672/shop", "", False),
        ("", "", False),
    ],
)
def test_empty_namespace_on_the_default_vhost_warns(settings, url, namespace, warns):
    settings.FUSION_JOBS_BROKER_URL = url
    settings.FUSION_JOBS_QUEUE_NAMESPACE = namespace
    assert ids(check_shared_vhost()) == (["fusion_jobs.W003"] if warns else [])
    if warns:
        assert "p@" not in check_shared_vhost()[0].msg


@pytest.mark.parametrize("name", ["CONSUMER_TIMEOUT", "THREADS", "EAGER", "RUN_RETENTION_DAYS"])
def test_manage_py_check_reports_a_bad_environment_value(name):
    """The reported crash: ``FUSION_JOBS_CONSUMER_TIMEOUT=abc manage.py check`` raised ValueError."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example.settings",
        PREFIX + name: "abc",
        "FUSION_JOBS_BROKER_URL": "amqp://guest:sentinel-pw@127.0.0.1:5672/fj",
    }
    env.pop("DATABASE_URL", None)
    out = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr and "ValueError" not in out.stderr, out.stderr
    assert f"{PREFIX}{name} (from the environment) is 'abc'" in out.stderr
    assert "sentinel-pw" not in out.stdout + out.stderr
