"""The schedules admin: what it shows (escaped), and pause / resume / run now behind permissions and confirmation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

import fusion_jobs
from fusion_jobs.models import CronSchedule, JobRun
from tests.conftest import wait_for

CHANGELIST = reverse("admin:fusion_jobs_cronschedule_changelist")
XSS = "<script>alert('x')</script>"


@pytest.fixture
def make_client(django_user_model: Any) -> Any:
    def make(username: str, *codenames: str) -> Client:
        user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
        user.user_permissions.add(
            *Permission.objects.filter(content_type__app_label="fusion_jobs", codename__in=codenames)
        )
        client = Client()
        client.force_login(user)
        return client

    return make


def schedule(name: str = "t-cron-admin", label: str = "x", **fields: Any) -> CronSchedule:
    fusion_jobs.ensure_cron(
        "t-cron-record", name, "*/5 * * * *", {"label": label}, misfire="all", max_lateness=300
    )
    CronSchedule.objects.filter(name=name).update(**fields)
    return CronSchedule.objects.get(name=name)


def act(client: Client, action: str, schedules: list[CronSchedule], confirm: bool) -> Any:
    data: dict[str, Any] = {
        "action": action,
        "_selected_action": [str(s.pk) for s in schedules],
        "index": "0",
    }
    if confirm:
        data["post"] = "yes"
    return client.post(CHANGELIST, data, follow=confirm)


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


@pytest.mark.django_db
def test_the_list_shows_state_policy_next_fire_and_last_run_escaped(make_client):
    row = schedule(label=XSS)
    run = JobRun.objects.create(
        task_name="t-cron-record", status="failed", cron=row, scheduled_for=timezone.now()
    )
    CronSchedule.objects.filter(pk=row.pk).update(last_run=run)
    schedule("t-cron-paused", paused=True)
    schedule("t-cron-orphan", orphaned=True)
    body = make_client("viewer", "view_cronschedule").get(CHANGELIST).content.decode()
    assert "<code>*/5 * * * *</code> UTC" in body
    assert "all (max lateness 300 s)" in body
    assert reverse("admin:fusion_jobs_jobrun_change", args=[str(run.pk)]) in body
    assert "fj-status-failed" in body
    for state in ("active", "paused", "orphaned"):
        assert f'class="fj-badge fj-cron-{state}"' in body
    detail = make_client("viewer2", "view_cronschedule").get(
        reverse("admin:fusion_jobs_cronschedule_change", args=[row.pk])
    )
    text = detail.content.decode()
    assert XSS not in text and "&lt;script&gt;" in text  # the input is shown, escaped
    assert (
        "Recent runs (last 15)" in text
        and reverse("admin:fusion_jobs_jobrun_change", args=[str(run.pk)]) in text
    )


@pytest.mark.django_db
def test_actions_need_their_permissions(make_client):
    row = schedule()
    viewer = make_client("viewer", "view_cronschedule")
    choices = viewer.get(CHANGELIST).context["action_form"]
    assert choices is None or [v for v, _ in choices.fields["action"].choices if v] == []
    act(viewer, "pause_schedules", [row], confirm=True)
    assert CronSchedule.objects.get(pk=row.pk).paused is False
    operator = make_client("op", "view_cronschedule", "pause_cronschedule", "run_cronschedule")
    form = operator.get(CHANGELIST).context["action_form"]
    assert [v for v, _ in form.fields["action"].choices if v] == [
        "pause_schedules",
        "resume_schedules",
        "run_now",
    ]


@pytest.mark.django_db
def test_pause_asks_first_then_pauses_and_resume_starts_from_the_next_tick(make_client):
    row = schedule(next_fire_at=timezone.now() - timedelta(hours=2))
    client = make_client("op", "view_cronschedule", "pause_cronschedule")
    page = act(client, "pause_schedules", [row], confirm=False)
    assert (
        page.status_code == 200
        and "Yes, pause" in page.content.decode()
        and "t-cron-admin" in page.content.decode()
    )
    assert CronSchedule.objects.get(pk=row.pk).paused is False  # nothing until confirmed
    assert "Paused 1 schedule(s)." in messages_of(act(client, "pause_schedules", [row], confirm=True))
    assert CronSchedule.objects.get(pk=row.pk).paused is True
    fusion_jobs.ensure_cron(
        "t-cron-record", "t-cron-admin", "*/5 * * * *", {"label": "x"}, misfire="all", max_lateness=300
    )
    assert CronSchedule.objects.get(pk=row.pk).paused is True  # a restart keeps the pause
    assert "Resumed 1 schedule(s)." in messages_of(act(client, "resume_schedules", [row], confirm=True))
    resumed = CronSchedule.objects.get(pk=row.pk)
    assert resumed.paused is False and resumed.next_fire_at > timezone.now()  # no catch-up of the pause


@pytest.mark.django_db
def test_run_now_is_refused_without_background_jobs(make_client):
    row = schedule()
    client = make_client("op", "view_cronschedule", "run_cronschedule")
    response = client.post(
        CHANGELIST, {"action": "run_now", "_selected_action": [row.pk], "index": "0"}, follow=True
    )
    assert any("never run inside this admin request" in m for m in messages_of(response))
    assert not JobRun.objects.exists()


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_run_now_queues_a_run_for_the_worker(make_client, broker_settings, worker):
    row = schedule(label="run-now")
    next_fire = row.next_fire_at
    client = make_client("op", "view_cronschedule", "run_cronschedule")
    page = act(client, "run_now", [row], confirm=False)
    assert "Yes, run now" in page.content.decode() and not JobRun.objects.exists()
    response = act(client, "run_now", [row], confirm=True)
    [run] = JobRun.objects.all()
    assert any("Queued 1 run(s)" in m for m in messages_of(response))
    assert (run.cron_id, run.scheduled_for, run.mode) == (row.pk, None, "worker")
    assert run.enqueued_by == "admin run-now by op" and run.published_at is not None
    assert wait_for(lambda: JobRun.objects.get(pk=run.pk).status == "succeeded", timeout=30)
    assert CronSchedule.objects.get(pk=row.pk).next_fire_at == next_fire  # not a tick
