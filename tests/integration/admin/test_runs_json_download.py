"""A run with 20 MB of arguments: its admin page shows the start of the JSON and a link to all of it."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from fusion_jobs.models import JobRun

pytestmark = pytest.mark.django_db

BIG = 20 * 1024 * 1024


@pytest.fixture
def big_run() -> JobRun:
    return JobRun.objects.create(
        task_name="demo-hello", status="succeeded", kwargs={"blob": "x" * BIG}, result={"ok": True}
    )


@pytest.fixture
def superuser_client(client: Client) -> Client:
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests"))
    return client


def test_the_run_page_truncates_big_json_and_links_to_the_whole(
    superuser_client: Client, big_run: JobRun
) -> None:
    response = superuser_client.get(reverse("admin:fusion_jobs_jobrun_change", args=[big_run.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert len(response.content) < 1024 * 1024, f"{len(response.content):,} bytes"
    url = reverse("admin:fusion_jobs_jobrun_json", args=[str(big_run.pk), "kwargs"])
    assert f'<a href="{url}" download>Download the whole JSON</a>' in html
    assert "Showing the first 65,536 characters of " in html
    assert "&quot;ok&quot;: true" in html  # a small value is shown whole, without a link

    download = superuser_client.get(url)

    assert download.status_code == 200
    assert download["Content-Disposition"] == f'attachment; filename="run-{big_run.pk}-kwargs.json"'
    assert json.loads(download.content) == {"blob": "x" * BIG}


def test_the_download_needs_view_permission(client: Client, big_run: JobRun) -> None:
    url = reverse("admin:fusion_jobs_jobrun_json", args=[str(big_run.pk), "kwargs"])
    staff = get_user_model().objects.create_user("staff", password="pw-for-tests", is_staff=True)

    assert client.get(url).status_code == 302  # to the login page
    client.force_login(staff)
    assert client.get(url).status_code == 403
    assert (
        client.get(reverse("admin:fusion_jobs_jobrun_json", args=[str(big_run.pk), "traceback"])).status_code
        == 404
    )


def test_the_retry_button_is_offered_only_where_a_retry_can_run(superuser_client: Client, settings) -> None:
    """Inline mode refuses every retry, so the run page offers no Retry button there."""
    run = JobRun.objects.create(task_name="demo-hello", status="failed")
    page = reverse("admin:fusion_jobs_jobrun_change", args=[run.pk])
    retry = reverse("admin:fusion_jobs_jobrun_retry", args=[str(run.pk)])

    settings.FUSION_JOBS_BROKER_URL = ""
    assert retry not in superuser_client.get(page).content.decode()

    settings.FUSION_JOBS_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/fj_unused"
    assert retry in superuser_client.get(page).content.decode()
