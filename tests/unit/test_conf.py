from __future__ import annotations

import fusion_jobs
from fusion_jobs.conf import jobs_settings


def test_settings_are_read_on_each_access(settings, monkeypatch):
    settings.FUSION_JOBS_MAX_PAYLOAD_BYTES = 10
    assert jobs_settings.MAX_PAYLOAD_BYTES == 10
    settings.FUSION_JOBS_MAX_PAYLOAD_BYTES = 20
    assert jobs_settings.MAX_PAYLOAD_BYTES == 20


def test_environment_is_the_fallback(settings, monkeypatch):
    del settings.FUSION_JOBS_BROKER_URL
    monkeypatch.setenv("FUSION_JOBS_BROKER_URL", "amqp://u:pw@127.0.0.1:5672/")
    monkeypatch.setenv("FUSION_JOBS_EAGER", "false")
    assert jobs_settings.source("BROKER_URL") == "environment"
    assert fusion_jobs.is_jobs_enabled() is True
    monkeypatch.setenv("FUSION_JOBS_EAGER", "true")
    assert fusion_jobs.is_jobs_enabled() is False


def test_status_masks_the_password(settings):
    settings.FUSION_JOBS_BROKER_URL = "amqp://guest:sentinel-pw@127.0.0.1:5672/"
    status = fusion_jobs.get_jobs_status()
    assert status["enabled"] is True
    assert status["mode"] == "broker"
    assert status["broker"] == "amqp://guest:***@127.0.0.1:5672/"
    assert "sentinel-pw" not in repr(status)


def test_status_without_broker(settings):
    settings.FUSION_JOBS_BROKER_URL = ""
    status = fusion_jobs.get_jobs_status()
    assert (status["enabled"], status["mode"], status["broker"]) == (False, "eager", None)


def test_eager_forces_inline(settings):
    settings.FUSION_JOBS_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"
    settings.FUSION_JOBS_EAGER = True
    assert fusion_jobs.is_jobs_enabled() is False
    assert fusion_jobs.get_jobs_status()["mode"] == "eager"


def test_readme_settings_table_lists_every_setting_with_its_text():
    """The README's settings table is the reference users read: it must match conf.SETTINGS."""
    from pathlib import Path

    from fusion_jobs.conf import PREFIX, SETTINGS

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = {
        line.split("|")[1].strip(" `"): line
        for line in readme.splitlines()
        if line.startswith("| `FUSION_JOBS_")
    }
    assert set(rows) == {PREFIX + name for name in SETTINGS}
    for name, spec in SETTINGS.items():
        assert spec.doc in rows[PREFIX + name], name
