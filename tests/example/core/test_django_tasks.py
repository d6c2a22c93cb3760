"""The example's sandbox starts a job declared with Django's @task, through Task.enqueue()."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from example.core.tasks import django_hello
from fusion_jobs.models import JobRun

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def user_client(client: Client, settings: Any) -> Client:
    settings.FUSION_JOBS_BROKER_URL = ""
    client.force_login(get_user_model().objects.create_user("grace", password="x"))
    return client


def test_the_sandbox_runs_a_django_task_and_shows_it(user_client: Client) -> None:
    page = user_client.get("/sandbox/jobs/").content.decode()
    assert f'value="{django_hello.module_path}"' in page
    response = user_client.post("/sandbox/jobs/enqueue/", {"task": django_hello.module_path})
    assert response.status_code == 302
    run = JobRun.objects.get(task_name=django_hello.module_path)
    assert (run.status, run.mode) == ("succeeded", "inline")
    assert run.result["greeting"] == "Hello, sandbox, from a Django @task!"
    assert django_hello.get_result(str(run.pk)).return_value == run.result
    page = user_client.get(response["Location"]).content.decode()
    assert str(run.pk) in page and django_hello.module_path in page
