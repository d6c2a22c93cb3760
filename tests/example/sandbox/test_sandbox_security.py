"""/sandbox/jobs/ as an attacker and as a confused user would meet it: who may start work, how often, whose
runs are shown, and what the page says when no worker is running or a document failed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from example.documents.models import Document
from example.sandbox.models import SandboxRun
from fusion_jobs.models import JobRun, WorkerHeartbeat

pytestmark = pytest.mark.django_db

JSON = {"Accept": "application/json"}


@pytest.fixture(autouse=True)
def inline(settings: Any) -> None:
    settings.FUSION_JOBS_BROKER_URL = ""
    cache.clear()


def logged_in(username: str) -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_user(username, password="pw-for-tests"))
    return client


def start(client: Client, capture: Callable[..., Any], task: str = "demo-hello") -> Any:
    with capture(execute=True):
        return client.post("/sandbox/jobs/enqueue/", {"task": task}, headers=JSON)


def test_anonymous_visitors_cannot_start_jobs(client: Client) -> None:
    as_json = client.post("/sandbox/jobs/enqueue/", {"task": "demo-count"}, headers=JSON)
    as_form = client.post("/sandbox/jobs/enqueue/", {"task": "demo-count"})

    assert as_json.status_code == 403 and as_json.json() == {"error": "log in to start a demo job"}
    assert as_form.status_code == 302 and as_form["Location"].startswith("/accounts/login/")
    assert not JobRun.objects.exists()
    page = client.get("/sandbox/jobs/").content.decode()
    assert 'id="demo-form"' not in page and "to start a demo job and see your runs" in page


def test_enqueue_is_rate_limited_per_user(
    settings: Any, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    settings.SANDBOX_ENQUEUE_RATE_LIMIT = "3/60"
    ada, bob = logged_in("ada"), logged_in("bob")

    codes = [start(ada, django_capture_on_commit_callbacks).status_code for _ in range(5)]

    assert codes == [201, 201, 201, 429, 429]
    assert JobRun.objects.count() == 3
    refused = start(ada, django_capture_on_commit_callbacks)
    assert refused.json()["error"].startswith("too many demo jobs: try again in ")
    assert start(bob, django_capture_on_commit_callbacks).status_code == 201  # per user, not global


def test_a_user_sees_only_their_own_runs(django_capture_on_commit_callbacks: Callable[..., Any]) -> None:
    ada, bob = logged_in("ada"), logged_in("bob")
    adas = start(ada, django_capture_on_commit_callbacks).json()["run"]["id"]
    bobs = start(bob, django_capture_on_commit_callbacks).json()["run"]["id"]
    cron = JobRun.objects.create(task_name="agent-retention-tick", status="failed", error="secret detail")

    assert ada.get(f"/sandbox/jobs/runs/{adas}.json").status_code == 200
    assert ada.get(f"/sandbox/jobs/runs/{bobs}.json").status_code == 404
    assert ada.get(f"/sandbox/jobs/runs/{cron.pk}.json").status_code == 404
    assert Client().get(f"/sandbox/jobs/runs/{adas}.json").status_code == 404
    page = ada.get(f"/sandbox/jobs/?run={bobs}").content.decode()
    assert adas in page and bobs not in page and str(cron.pk) not in page
    assert str(cron.pk) not in Client().get("/").content.decode()
    assert adas not in Client().get("/sandbox/jobs/").content.decode()


def test_a_run_whose_document_failed_does_not_say_succeeded() -> None:
    """The job handled the document (so the run succeeded), but the document failed: say that."""
    ada = logged_in("ada")
    owner = get_user_model().objects.get(username="ada")
    run = JobRun.objects.create(
        task_name="process-chat-document",
        status="succeeded",
        mode="inline",
        result={"document_id": 1, "status": "failed", "error": "no extractable text (scanned?)"},
    )
    document = Document.objects.create(
        owner=owner, title="scan", file="documents/x.pdf", status="failed", last_run_id=run.pk
    )

    sandbox = ada.get("/sandbox/jobs/").content.decode()
    detail = ada.get(f"/documents/{document.pk}/").content.decode()

    badge = '<span class="status status-warning" data-status="succeeded">Document failed</span>'
    assert badge in sandbox and badge in detail
    assert ">Succeeded<" not in sandbox and ">Succeeded<" not in detail


def test_the_page_says_when_no_worker_is_running(settings: Any, client: Client) -> None:
    settings.FUSION_JOBS_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/fj_none"
    settings.SANDBOX_NO_WORKER_AFTER_SECONDS = 60
    old = timezone.now() - timedelta(minutes=5)
    JobRun.objects.create(task_name="demo-hello", status="queued", mode="worker", enqueued_at=old)

    stuck = client.get("/sandbox/jobs/status.json").json()["no_worker"]
    page = client.get("/sandbox/jobs/").content.decode()

    assert stuck.startswith("1 run queued on `default` for 5 min; no worker consuming it has ever registered")
    assert "manage.py rundramatiq" in stuck and stuck in page

    now = timezone.now()  # a live worker on the queue (the workers registry, fusion_jobs.workers)
    WorkerHeartbeat.objects.create(
        id="worker:h:1", host="h", pid=1, queues=["default"], started_at=now, last_seen_at=now
    )
    assert client.get("/sandbox/jobs/status.json").json()["no_worker"] == ""


def test_no_worker_notice_only_with_a_broker(client: Client) -> None:
    old = timezone.now() - timedelta(minutes=5)
    JobRun.objects.create(task_name="demo-hello", status="queued", mode="worker", enqueued_at=old)

    assert client.get("/sandbox/jobs/status.json").json()["no_worker"] == ""


def test_inline_mode_is_one_neutral_word_everywhere(client: Client) -> None:
    pages = [client.get(url).content.decode() for url in ("/", "/sandbox/jobs/", "/documents/")]
    status = client.get("/sandbox/jobs/status.json").json()

    assert status["mode"] == "eager" and status["label"] == "inline"  # the API keeps its value
    for html in pages:
        assert "badge-neutral" in html and ">inline</span>" in html
        for stale in ("disabled", "eager", 'badge-off">inline', "jobs: inline"):
            assert stale not in html, stale


def test_the_favicon_is_served(client: Client) -> None:
    response = client.get("/favicon.ico")

    assert response.status_code == 301 and response["Location"].endswith("favicon.svg")
    assert 'rel="icon"' in client.get("/").content.decode()


def test_the_ui_never_says_seed(client: Client) -> None:
    for url in ("/", "/sandbox/jobs/", "/documents/"):
        assert "seed" not in client.get(url).content.decode().lower(), url


def test_sandbox_runs_are_recorded_for_their_user(
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    ada = logged_in("ada")
    run_id = start(ada, django_capture_on_commit_callbacks).json()["run"]["id"]

    assert SandboxRun.objects.get().user.get_username() == "ada"
    assert str(SandboxRun.objects.get().run_id) == run_id


def test_the_documents_pages_say_when_no_worker_is_running(settings: Any, client: Client) -> None:
    """An upload queued to a worker that never comes would say "Waiting for a worker" forever."""
    settings.FUSION_JOBS_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/fj_none"
    old = timezone.now() - timedelta(minutes=5)
    run = JobRun.objects.create(
        task_name="process-chat-document", status="queued", mode="worker", enqueued_at=old
    )
    document = Document.objects.create(
        title="waiting", file="documents/w.pdf", status="pending", last_run_id=run.pk
    )

    for url in ("/documents/", f"/documents/{document.pk}/"):
        assert "no worker consuming it has ever registered" in client.get(url).content.decode(), url
