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
    assert '<code>*/5 * * * *</code> <span style="overflow-wrap:anywhere">UTC</span>' in body
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
def test_resuming_a_schedule_whose_stored_expression_no_longer_parses_says_so(make_client):
    """Rows written before the strict parser (``* * * jan5 *`` was accepted) stay in the table."""
    good = schedule("t-cron-good", paused=True)
    bad = schedule("t-cron-old", paused=True, expression="* * * jan5 *")
    client = make_client("op", "view_cronschedule", "pause_cronschedule")
    response = act(client, "resume_schedules", [good, bad], confirm=True)
    assert response.status_code == 200
    shown = messages_of(response)
    assert "Resumed 1 schedule(s)." in shown
    assert any("t-cron-old" in message and "jan5" in message for message in shown), shown
    assert CronSchedule.objects.get(pk=bad.pk).paused is True
    assert CronSchedule.objects.get(pk=good.pk).paused is False


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


ADD = reverse("admin:fusion_jobs_cronschedule_add")


def change_url(row: CronSchedule) -> str:
    return reverse("admin:fusion_jobs_cronschedule_change", args=[row.pk])


def form_data(**fields: Any) -> dict[str, Any]:
    return {
        "name": "t-cron-runtime",
        "task_name": "t-cron-record",
        "expression": "30 7 * * 1-5",
        "timezone": "Europe/Berlin",
        "misfire": "skip",
        "max_lateness": "",
        "input": '{"label": "from the admin"}',
        **fields,
    }


def declared(name: str = "t-cron-a") -> CronSchedule:
    from fusion_jobs.scheduler.declare import declaring

    with declaring():
        fusion_jobs.ensure_cron("t-cron-record", name, "*/5 * * * *", {"label": "a"})
    return CronSchedule.objects.get(name=name)


@pytest.mark.django_db
def test_the_list_loads_the_admin_stylesheet_and_shows_each_origin(make_client):
    # Without the stylesheet the state badges were dark text on dark green.
    schedule("t-cron-runtime")
    declared()
    body = make_client("viewer", "view_cronschedule").get(CHANGELIST).content.decode()
    assert "fusion_jobs/admin.css" in body
    assert "Declared in code" in body and "Created at runtime" in body
    assert "?origin__exact=runtime" in body  # the filter


@pytest.mark.django_db
def test_a_runtime_schedule_is_added_from_the_admin_through_ensure_cron_s_checks(make_client):
    client = make_client("editor", "view_cronschedule", "add_cronschedule", "change_cronschedule")
    page = client.get(ADD).content.decode()
    assert '<option value="t-cron-record">' in page and '<option value="fusion-jobs-prune-runs">' in page
    response = client.post(ADD, form_data(), follow=True)
    assert response.status_code == 200, response.content
    row = CronSchedule.objects.get(name="t-cron-runtime")
    assert (row.origin, row.task_name, row.expression, row.timezone, row.misfire, row.input) == (
        "runtime",
        "t-cron-record",
        "30 7 * * 1-5",
        "Europe/Berlin",
        "skip",
        {"label": "from the admin"},
    )
    assert row.next_fire_at is not None and row.next_fire_at > timezone.now()
    # Its page is a form, with the next five fires in its zone and in UTC.
    text = client.get(change_url(row)).content.decode()
    assert 'name="expression"' in text and 'class="fj-next-fires"' in text
    assert text.count("Europe/Berlin <span") == 5 and "07:30 Europe/Berlin" in text


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"expression": "61 * * * *"}, "expression", "61"),
        ({"expression": "0 0 30 2 *"}, "expression", "never fires"),
        ({"timezone": "Mars/Olympus"}, "timezone", "Mars/Olympus"),
        ({"input": "{}"}, "input", "label"),
        ({"input": '{"label": "x", "colour": 1}'}, "input", "colour"),
        ({"input": "[1, 2]"}, "input", "must be a dict"),
        ({"input": '{"label": ' + "[" * 100_000 + "]" * 100_000 + "}"}, "input", "nested too deeply"),
        ({"task_name": "no-such-task"}, "task_name", "no-such-task"),
        ({"max_lateness": "-5"}, "max_lateness", "positive"),
    ],
)
@pytest.mark.django_db
def test_the_admin_form_refuses_what_ensure_cron_would(make_client, fields, field, message):
    client = make_client("editor", "view_cronschedule", "add_cronschedule")
    response = client.post(ADD, form_data(**fields))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert field in errors and message in " ".join(errors[field]), errors
    assert not CronSchedule.objects.exists()


@pytest.mark.django_db
def test_a_runtime_schedule_is_edited_and_deleted_a_declared_one_is_neither(make_client):
    client = make_client(
        "editor", "view_cronschedule", "add_cronschedule", "change_cronschedule", "delete_cronschedule"
    )
    client.post(ADD, form_data(), follow=True)
    row = CronSchedule.objects.get(name="t-cron-runtime")
    client.post(change_url(row), form_data(expression="0 8 * * *", input='{"label": "edited"}'), follow=True)
    row.refresh_from_db()
    assert (row.expression, row.input, row.origin) == ("0 8 * * *", {"label": "edited"}, "runtime")

    code = declared()
    page = client.get(change_url(code)).content.decode()
    assert 'name="expression"' not in page and "Declared in code" in page  # read-only
    client.post(change_url(code), form_data(name="t-cron-a", expression="0 9 * * *"))
    assert CronSchedule.objects.get(pk=code.pk).expression == "*/5 * * * *"
    delete = reverse("admin:fusion_jobs_cronschedule_delete", args=[code.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    form = client.get(CHANGELIST).context["action_form"]  # no pause or run permission: no actions
    assert form is None or "delete_selected" not in dict(form.fields["action"].choices)

    client.post(reverse("admin:fusion_jobs_cronschedule_delete", args=[row.pk]), {"post": "yes"}, follow=True)
    assert list(CronSchedule.objects.values_list("name", flat=True)) == ["t-cron-a"]


@pytest.mark.django_db
def test_without_the_add_permission_there_is_no_form(make_client):
    viewer = make_client("viewer", "view_cronschedule")
    assert viewer.get(ADD).status_code == 403
    row = schedule("t-cron-runtime")
    assert 'name="expression"' not in viewer.get(change_url(row)).content.decode()


@pytest.mark.django_db
def test_a_paused_schedule_shows_no_next_fires(make_client):
    row = schedule("t-cron-runtime", paused=True)
    text = make_client("viewer", "view_cronschedule").get(change_url(row)).content.decode()
    assert 'class="fj-next-fires"' not in text and "not firing" in text


@pytest.mark.django_db
def test_the_form_s_preview_answers_with_the_next_fires_or_the_parse_error(make_client):
    preview = reverse("admin:fusion_jobs_cronschedule_preview")
    client = make_client("editor", "view_cronschedule", "add_cronschedule")
    good = client.get(preview, {"expression": "30 7 * * 1-5", "timezone": "Europe/Berlin"}).json()
    assert good["html"].count("<li>") == 5 and "07:30 Europe/Berlin" in good["html"]
    bad = client.get(preview, {"expression": "* * * jan5 *", "timezone": "UTC"}).json()
    assert "jan5" in bad["error"]
    assert (
        "Mars/Olympus"
        in client.get(preview, {"expression": "* * * * *", "timezone": "Mars/Olympus"}).json()["error"]
    )
    assert make_client("nobody").get(preview, {"expression": "* * * * *"}).status_code in (302, 403)


def test_a_filter_or_search_with_a_nul_is_an_invalid_filter_not_a_server_error(make_client):
    viewer = make_client("viewer", "view_cronschedule")
    for query in ({"origin": "run\x00time"}, {"q": "digest\x00"}):
        response = viewer.get(CHANGELIST, query)
        assert response.status_code == 302 and response["Location"].endswith("?e=1")
