"""The /sandbox/jobs/ page with Django's test client: status JSON, the demo button, schedules, mailer."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from example.agent.crons import register_agent_cron
from example.agent.models import MessageStatus, OutboundMessage
from example.sandbox.models import SandboxRun
from fusion_jobs.marking import flush_marks
from fusion_jobs.models import CronSchedule, JobRun

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-pa55"


@pytest.fixture(autouse=True)
def no_broker(settings: Any) -> None:
    settings.FUSION_JOBS_BROKER_URL = ""
    settings.SMTP_HOST = ""
    cache.clear()  # the per-user rate limits


@pytest.fixture
def user_client(client: Client) -> Client:
    """Starting a demo job needs a login."""
    client.force_login(get_user_model().objects.create_user("ada", password="pw-for-tests"))
    return client


def test_the_page_shows_the_badge_the_seam_and_the_demo_form(user_client: Client) -> None:
    response = user_client.get("/sandbox/jobs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert '<span id="jobs-badge" class="badge badge-lg badge-neutral">inline</span>' in html
    assert 'data-status-url="/sandbox/jobs/status.json"' in html
    # The seam is shown as code, escaped like any other text.
    assert "def kick_processing(document_id: int)" in html
    assert "fusion_jobs.enqueue(&quot;process-chat-document&quot;, document_id=document_id)" in html
    assert 'action="/sandbox/jobs/enqueue/"' in html and "csrfmiddlewaretoken" in html
    assert 'value="demo-count"' in html
    assert "sandbox/jobs.js" in html


def test_status_json_reports_the_mode(client: Client) -> None:
    response = client.get("/sandbox/jobs/status.json")

    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    data = response.json()
    assert (data["enabled"], data["mode"], data["broker"], data["mailer"]) == (False, "eager", None, "held")
    assert "no broker configured" in data["reason"]


def test_the_broker_password_never_reaches_the_page_or_the_json(client: Client, settings: Any) -> None:
    settings.FUSION_JOBS_BROKER_URL = f"amqp://fusion:{SECRET}@127.0.0.1:5672/fj_agent"

    page = client.get("/sandbox/jobs/").content.decode()
    data = client.get("/sandbox/jobs/status.json").json()

    assert (data["enabled"], data["mode"]) == (True, "broker")
    assert data["broker"] == "amqp://fusion:***@127.0.0.1:5672/fj_agent"
    assert SECRET not in page and SECRET not in str(data)
    assert "amqp://fusion:***@127.0.0.1:5672/fj_agent" in page
    assert '<span id="jobs-badge" class="badge badge-lg badge-on">broker</span>' in page


def test_the_button_runs_the_demo_job_and_its_status_can_be_followed(
    user_client: Client, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    client = user_client
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/sandbox/jobs/enqueue/", {"task": "demo-hello"}, headers={"Accept": "application/json"}
        )

    assert response.status_code == 201
    started = response.json()
    assert started["mode"] == "inline"
    run = JobRun.objects.get(pk=started["run"]["id"])
    assert (run.task_name, run.mode, run.kwargs) == ("demo-hello", "inline", {"name": "sandbox"})
    assert started["status_url"] == f"/sandbox/jobs/runs/{run.pk}.json"

    followed = client.get(started["status_url"]).json()

    assert (followed["status"], followed["terminal"]) == ("succeeded", True)
    assert followed["result"]["greeting"] == "Hello, sandbox!"


def test_without_javascript_the_form_redirects_back_to_the_run(
    user_client: Client, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    client = user_client
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/sandbox/jobs/enqueue/", {"task": "demo-count"})

    run = JobRun.objects.get(task_name="demo-count")
    assert response.status_code == 302
    assert response["Location"] == f"/sandbox/jobs/?run={run.pk}#demo"
    page = client.get(response["Location"]).content.decode()
    assert f"run <code>{run.pk}</code>" in page
    assert 'class="status status-succeeded"' in page


def test_only_demo_jobs_can_be_started_and_only_by_post_with_csrf(user_client: Client) -> None:
    client = user_client
    assert client.post("/sandbox/jobs/enqueue/", {"task": "agent-retention-tick"}).status_code == 400
    assert client.get("/sandbox/jobs/enqueue/").status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(get_user_model().objects.get(username="ada"))
    assert strict.post("/sandbox/jobs/enqueue/", {"task": "demo-hello"}).status_code == 403
    assert not JobRun.objects.exists()


def test_an_unknown_run_is_a_404(client: Client) -> None:
    assert client.get(f"/sandbox/jobs/runs/{uuid.uuid4()}.json").status_code == 404


def test_declared_schedules_with_a_hint_until_runcrons_registers_them(client: Client) -> None:
    before = client.get("/sandbox/jobs/").content.decode()

    assert "Not registered yet" in before and "manage.py runcrons" in before
    assert before.count("not registered</span>") == 6
    for name in ("proactive-agent-every-minute", "agent-digest-briefing"):
        assert name in before

    register_agent_cron()
    after = client.get("/sandbox/jobs/").content.decode()

    assert "Not registered yet" not in after
    assert after.count('<span class="status status-succeeded">active</span>') == 6
    digest = CronSchedule.objects.get(name="agent-digest-briefing")
    assert f"{digest.next_fire_at:%Y-%m-%d %H:%M}" in after
    assert "overdue" not in after

    CronSchedule.objects.filter(pk=digest.pk).update(next_fire_at=timezone.now() - timedelta(minutes=5))
    stalled = client.get("/sandbox/jobs/").content.decode()

    assert stalled.count(">overdue</span>") == 1  # registered, but runcrons did not fire it


def test_the_mailer_mode_is_shown_with_held_counts(client: Client, settings: Any) -> None:
    OutboundMessage.objects.create(to="a@example.test", subject="s", body="b", status=MessageStatus.HELD)

    held = client.get("/sandbox/jobs/").content.decode()

    assert "SMTP_HOST is unset: messages are logged and held" in held
    assert "<strong>1</strong> held (no mailer)" in held

    settings.SMTP_HOST = "smtp.example.test"
    smtp = client.get("/sandbox/jobs/").content.decode()

    assert "SMTP_HOST is set" in smtp and "<code>smtp.example.test</code>" in smtp
    assert client.get("/sandbox/jobs/status.json").json()["mailer"] == "smtp"


def test_the_home_page_and_the_nav_link_to_the_sandbox(client: Client) -> None:
    html = client.get(reverse("home")).content.decode()

    assert html.count('href="/sandbox/jobs/"') == 2  # the nav link and the feature card
    assert "Jobs sandbox" in html


def test_run_data_is_escaped(user_client: Client) -> None:
    client = user_client
    run = JobRun.objects.create(task_name="<script>alert(1)</script>", status="failed", mode="inline")
    SandboxRun.objects.create(run_id=run.pk, user=get_user_model().objects.get(username="ada"))

    html = client.get(f"/sandbox/jobs/?run={run.pk}").content.decode()

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)  # the published mark is written by another thread
def test_with_a_broker_the_button_queues_a_worker_run(
    user_client: Client, broker_settings: str, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    from tests.conftest import purge_queues

    client = user_client
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                "/sandbox/jobs/enqueue/", {"task": "demo-hello"}, headers={"Accept": "application/json"}
            )

        assert response.status_code == 201
        assert response.json()["mode"] == "queued"
        run = JobRun.objects.get(pk=response.json()["run"]["id"])
        assert (run.mode, run.status) == ("worker", "queued")
        assert flush_marks(10)
        run.refresh_from_db()
        assert run.published_at is not None
    finally:
        purge_queues(broker_settings)
