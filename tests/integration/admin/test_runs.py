"""The run admin through the test client: access control, escaping, retry/cancel with confirmation, dashboard."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from fusion_jobs.admin import actions
from fusion_jobs.admin.counting import estimated_count
from fusion_jobs.models import CronSchedule, JobRun
from fusion_jobs.stats import TaskRow, dashboard_stats, finished_runs, percentile, python_finished_stats
from tests.conftest import wait_for

XSS = "<script>alert('xss')</script>"
CHANGELIST = "admin:fusion_jobs_jobrun_changelist"
DASHBOARD = "admin:fusion_jobs_jobrun_dashboard"


def run_url(name: str, run: JobRun) -> str:
    return reverse(f"admin:fusion_jobs_jobrun_{name}", args=[str(run.pk)])


def make_run(**fields: Any) -> JobRun:
    defaults: dict[str, Any] = {"task_name": "t-record", "kwargs": {"label": "x"}, "status": "succeeded"}
    return JobRun.objects.create(**{**defaults, **fields})


def grant(user: Any, *codenames: str) -> Any:
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="fusion_jobs", codename__in=codenames)
    )
    return type(user).objects.get(pk=user.pk)  # a fresh object: no stale permission cache


@pytest.fixture
def make_user(django_user_model: Any) -> Any:
    def make(username: str, *codenames: str, staff: bool = True) -> Any:
        user = django_user_model.objects.create_user(username, password="pw", is_staff=staff)
        return grant(user, *codenames)

    return make


@pytest.fixture
def viewer_client(make_user: Any) -> Client:
    client = Client()
    client.force_login(make_user("viewer", "view_jobrun"))
    return client


@pytest.fixture
def operator_client(make_user: Any) -> Client:
    client = Client()
    client.force_login(make_user("alice", "view_jobrun", "retry_jobrun", "cancel_jobrun"))
    return client


def action_post(client: Client, action: str, runs: list[JobRun], *, url: str = "", **extra: str) -> Any:
    data: dict[str, Any] = {"action": action, "_selected_action": [str(r.pk) for r in runs], "index": "0"}
    data.update(extra)
    return client.post(url or reverse(CHANGELIST), data)


def action_choices(response: Any) -> list[str]:
    form = response.context["action_form"]
    return [value for value, _label in form.fields["action"].choices] if form else []


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


# --- Access control ---------------------------------------------------------------------------


def plugin_urls(run: JobRun) -> list[str]:
    return [
        reverse(CHANGELIST),
        run_url("change", run),
        reverse(DASHBOARD),
        run_url("retry", run),
        run_url("cancel", run),
        reverse("admin:fusion_jobs_jobsdashboard_changelist"),
    ]


@pytest.mark.django_db
def test_anonymous_and_non_staff_get_the_login_page(make_user):
    run = make_run()
    non_staff = Client()
    non_staff.force_login(make_user("bob", "view_jobrun", "retry_jobrun", "cancel_jobrun", staff=False))
    for client in (Client(), non_staff):
        for url in plugin_urls(run):
            for method in (client.get, client.post):
                response = method(url)
                assert response.status_code == 302, url
                assert response["Location"].startswith(reverse("admin:login") + "?next="), url
        page = client.get(reverse(DASHBOARD), follow=True)
        assert page.templates[0].name == "admin/login.html"
    run.refresh_from_db()
    assert run.status == "succeeded" and JobRun.objects.count() == 1


@pytest.mark.django_db
def test_staff_without_the_view_permission_is_forbidden(make_user):
    run = make_run()
    client = Client()
    client.force_login(make_user("nobody"))
    for url in plugin_urls(run):
        assert client.get(url).status_code == 403, url


@pytest.mark.django_db
def test_view_only_staff_sees_runs_but_no_actions_or_buttons(viewer_client):
    run = make_run(status="failed")
    queued = make_run(status="queued")
    response = viewer_client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    choices = action_choices(response)
    assert "retry_runs" not in choices and "cancel_runs" not in choices
    assert str(run.pk)[:8] in response.content.decode()
    for target in (run, queued):
        page = viewer_client.get(run_url("change", target)).content.decode()
        assert run_url("retry", target) not in page and run_url("cancel", target) not in page


@pytest.mark.django_db
def test_forged_action_posts_from_a_view_only_user_are_refused(viewer_client):
    failed = make_run(status="failed")
    queued = make_run(status="queued")
    for action, run in (("retry_runs", failed), ("cancel_runs", queued)):
        assert action_post(viewer_client, action, [run], post="yes").status_code == 403
        assert viewer_client.post(run_url(action.split("_")[0], run)).status_code == 403
    failed.refresh_from_db()
    queued.refresh_from_db()
    assert (failed.status, queued.status) == ("failed", "queued")
    assert JobRun.objects.count() == 2


@pytest.mark.django_db
def test_a_user_with_one_permission_gets_only_that_action(make_user):
    client = Client()
    client.force_login(make_user("canceller", "view_jobrun", "cancel_jobrun"))
    run = make_run(status="failed")
    choices = action_choices(client.get(reverse(CHANGELIST)))
    assert "cancel_runs" in choices and "retry_runs" not in choices
    assert action_post(client, "retry_runs", [run], post="yes").status_code == 403
    assert JobRun.objects.count() == 1


@pytest.mark.django_db
def test_actions_need_a_csrf_token(make_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("alice", "view_jobrun", "cancel_jobrun"))
    run = make_run(status="queued")
    assert action_post(client, "cancel_runs", [run], post="yes").status_code == 403
    assert client.post(run_url("cancel", run)).status_code == 403
    run.refresh_from_db()
    assert run.status == "queued"


@pytest.mark.django_db
def test_runs_are_read_only(make_user):
    client = Client()
    client.force_login(make_user("all", "view_jobrun", "change_jobrun", "add_jobrun", "delete_jobrun"))
    run = make_run()
    assert client.get(reverse("admin:fusion_jobs_jobrun_add")).status_code == 403
    assert client.post(run_url("delete", run), {"post": "yes"}).status_code == 403
    response = client.post(run_url("change", run), {"status": "failed", "task_name": "other"})
    assert response.status_code == 403
    run.refresh_from_db()
    assert (run.status, run.task_name) == ("succeeded", "t-record")


# --- Escaping and the detail page ----------------------------------------------------------------


@pytest.mark.django_db
def test_script_in_arguments_result_traceback_and_log_is_escaped(admin_client):
    run = make_run(
        status="failed",
        kwargs={"label": XSS, XSS: [XSS]},
        result={"html": XSS},
        error=f"ValueError: {XSS}",
        traceback=f'Traceback (most recent call last):\n  File "x.py"\nValueError: {XSS}',
        attempt_log=[{"attempt": 1, "outcome": "failed", "worker": XSS, "error": XSS}],
        progress_stage=XSS,
        progress_done=1,
        progress_total=2,
    )
    for url in (run_url("change", run), reverse(CHANGELIST)):
        body = admin_client.get(url).content.decode()
        assert "<script>" not in body, url
        assert "&lt;script&gt;" in body, url


@pytest.mark.django_db
def test_detail_pretty_prints_json_and_shows_the_attempt_log(admin_client):
    original = make_run(status="failed")
    run = make_run(
        status="succeeded",
        kwargs={"b": [1, 2], "a": {"nested": True}},
        result={"ok": 1},
        attempts=2,
        attempt_log=[{"attempt": 1, "outcome": "lost", "worker": "host:41", "error": "worker died"}],
        retry_of=original,
    )
    retry = make_run(status="queued", retry_of=run)
    body = admin_client.get(run_url("change", run)).content.decode()
    pretty = (
        "{\n  &quot;a&quot;: {\n    &quot;nested&quot;: true\n  },\n  &quot;b&quot;: [\n    1,\n    2\n  ]\n}"
    )
    assert f'<pre class="fj-pre">{pretty}</pre>' in body
    table = re.search(r'<table class="fj-attempts">.*?</table>', body, re.S)
    assert table is not None
    assert "<td>1</td><td>lost</td><td>host:41</td>" in table.group(0)
    assert f'href="{run_url("change", original)}"' in body  # retry of
    assert f'href="{run_url("change", retry)}"' in body  # its retries


@pytest.mark.django_db
def test_list_shows_badge_progress_and_duration(admin_client):
    now = timezone.now()
    make_run(
        status="running",
        progress_stage="embedding",
        progress_done=3,
        progress_total=4,
        started_at=now - timedelta(seconds=5),
    )
    make_run(
        status="succeeded", started_at=now - timedelta(seconds=3), finished_at=now - timedelta(seconds=1)
    )
    body = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert 'class="fj-badge fj-status-running"' in body and 'class="fj-badge fj-status-succeeded"' in body
    assert '<progress class="fj-progress" max="100" value="75"' in body and "embedding 75%" in body
    assert "2.00 s" in body
    assert reverse(DASHBOARD) in body


@pytest.mark.django_db
def test_list_filters_and_search(admin_client):
    failed = make_run(task_name="t-echo", status="failed", queue="default")
    ok = make_run(task_name="t-record", status="succeeded")
    old = make_run(task_name="t-record", status="failed", enqueued_at=timezone.now() - timedelta(days=3))

    def listed(query: str) -> set[str]:
        response = admin_client.get(reverse(CHANGELIST) + query)
        assert response.status_code == 200, query
        return {str(r.pk) for r in response.context["cl"].result_list}

    assert listed("?status__exact=failed&task_name=t-echo") == {str(failed.pk)}
    assert listed("?enqueued=24h") == {str(failed.pk), str(ok.pk)}
    yesterday = (timezone.now() - timedelta(days=1)).isoformat()
    assert listed("?" + urlencode({"enqueued_at__lt": yesterday})) == {str(old.pk)}
    assert listed("?mode__exact=inline") == set()
    assert listed("?queue=default&status__exact=failed") == {str(failed.pk), str(old.pk)}
    assert listed(f"?q={failed.pk}") == {str(failed.pk)}
    assert listed(f"?q={str(ok.pk)[:8]}") == {str(ok.pk)}
    assert listed("?q=ECHO") == {str(failed.pk)}


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["?task_name=t-%00echo", "?queue=%00", "?status__exact=fail%00ed"])
def test_a_filter_value_with_a_nul_is_an_invalid_filter_not_a_server_error(admin_client, query):
    """PostgreSQL refuses NUL in a query parameter: the admin's "invalid lookup" redirect, not a 500."""
    make_run(task_name="t-echo", status="failed")
    response = admin_client.get(reverse(CHANGELIST) + query)
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


@pytest.mark.django_db
def test_list_loads_no_big_columns_and_a_fixed_number_of_queries(admin_client):
    for i in range(30):
        make_run(kwargs={"i": i}, traceback="x" * 1000, retry_of=None)
    with CaptureQueriesContext(connection) as queries:
        assert admin_client.get(reverse(CHANGELIST)).status_code == 200
    run_selects = [q["sql"] for q in queries if 'FROM "fusion_jobs_jobrun"' in q["sql"]]
    assert len(queries) <= 12, [q["sql"] for q in queries]
    assert all('"traceback"' not in sql and '"kwargs"' not in sql for sql in run_selects)
    assert not any("COUNT(" in sql and "LIMIT" not in sql for sql in run_selects)  # counts are bounded


@pytest.mark.django_db
def test_estimated_count_is_exact_when_small_and_bounded_when_large():
    for _ in range(12):
        make_run(status="failed")
    make_run(status="succeeded")
    runs = JobRun.objects.all()
    assert estimated_count(runs.filter(status="failed"), exact_limit=100) == 12
    assert estimated_count(runs.filter(status="failed"), exact_limit=5) >= 6  # the planner's estimate
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE fusion_jobs_jobrun")
    assert estimated_count(runs, exact_limit=5) == 13  # pg_class.reltuples after ANALYZE
    assert estimated_count(runs, exact_limit=100) == 13


# --- Retry and cancel ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_retry_is_refused_when_jobs_are_disabled(operator_client):
    run = make_run(status="failed")
    response = action_post(operator_client, "retry_runs", [run])
    assert response.status_code == 302
    follow = operator_client.get(response["Location"])
    assert any("Retry needs background jobs" in m for m in messages_of(follow))
    page = operator_client.get(run_url("retry", run)).content.decode()
    assert "Retry needs background jobs" in page and 'value="Yes, retry"' not in page
    assert operator_client.post(run_url("retry", run)).status_code == 302
    assert JobRun.objects.count() == 1


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_retry_action_confirms_then_queues_a_linked_run(operator_client, broker_settings, worker):
    original = make_run(task_name="t-record", kwargs={"label": "retried"}, status="failed", error="boom")
    running = make_run(status="running")
    confirm = action_post(operator_client, "retry_runs", [original, running])
    assert confirm.status_code == 200
    assert confirm.templates[0].name == "admin/fusion_jobs/jobrun/confirm_action.html"
    assert JobRun.objects.count() == 2  # nothing happens before the confirmation
    body = confirm.content.decode()
    assert 'name="post" value="yes"' in body and 'value="retry_runs"' in body
    assert "Retry 1 run?" in body and "1 other selected run will be left alone" in body

    done = action_post(operator_client, "retry_runs", [original, running], post="yes")
    assert done.status_code == 302
    new = JobRun.objects.get(retry_of=original)
    assert (new.task_name, new.kwargs, new.mode) == ("t-record", {"label": "retried"}, "worker")
    assert new.enqueued_by == "admin retry by alice"
    assert not JobRun.objects.filter(retry_of=running).exists()
    ran = wait_for(lambda: JobRun.objects.filter(pk=new.pk, status="succeeded").first(), what="the retry")
    assert ran.published_at is not None and ran.result["label"] == "retried"
    original.refresh_from_db()
    assert (original.status, original.error) == ("failed", "boom")  # the original is history


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_retry_button_on_the_detail_page(operator_client, broker_settings, worker):
    original = make_run(task_name="t-record", kwargs={"label": "button"}, status="timed_out")
    page = operator_client.get(run_url("change", original)).content.decode()
    assert run_url("retry", original) in page
    confirm = operator_client.get(run_url("retry", original))
    assert confirm.status_code == 200 and 'value="Yes, retry"' in confirm.content.decode()
    assert JobRun.objects.count() == 1
    response = operator_client.post(run_url("retry", original))
    new = JobRun.objects.get(retry_of=original)
    assert response.status_code == 302 and response["Location"] == run_url("change", new)
    wait_for(lambda: JobRun.objects.filter(pk=new.pk, status="succeeded").exists(), what="the retry")
    assert run_url("change", new) in operator_client.get(run_url("change", original)).content.decode()


@pytest.mark.django_db
def test_bulk_retry_is_capped(operator_client, settings, monkeypatch):
    settings.FUSION_JOBS_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/never-published"
    monkeypatch.setattr(actions, "BULK_RETRY_LIMIT", 2)
    runs = [make_run(status="failed") for _ in range(3)]
    response = action_post(operator_client, "retry_runs", runs[:1], select_across="1")
    assert response.status_code == 302
    assert any(
        "retry at most 2 at a time" in m for m in messages_of(operator_client.get(response["Location"]))
    )
    assert JobRun.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_retry_with_the_broker_down_stays_queued_and_stops_early(operator_client, settings):
    from fusion_jobs.backends.broker import reset_broker
    from tests.testapp.models import Marker

    settings.FUSION_JOBS_BROKER_URL = "amqp://guest:sentinel-pw@127.0.0.1:1/"  # nothing listens on port 1
    reset_broker()
    runs = [make_run(task_name="t-record", kwargs={"label": f"down-{i}"}, status="failed") for i in range(3)]
    try:
        response = action_post(operator_client, "retry_runs", runs, post="yes")
    finally:
        reset_broker()
    assert response.status_code == 302
    retries = list(JobRun.objects.filter(retry_of__isnull=False))
    assert len(retries) == 1  # the first retry found the broker down; the others were not tried
    assert (retries[0].status, retries[0].mode, retries[0].published_at) == ("queued", "worker", None)
    assert not Marker.objects.exists()  # never run inline in the admin request
    notes = " ".join(messages_of(operator_client.get(response["Location"])))
    assert "did not accept 1 of them" in notes and "2 other run(s) were not retried" in notes
    assert "sentinel-pw" not in notes


@pytest.mark.django_db(transaction=True)
def test_retry_refuses_arguments_that_no_longer_fit_and_rows_of_rejected_messages(operator_client, settings):
    """A retry is checked like a new enqueue: nothing is written for a run it could never execute."""
    settings.FUSION_JOBS_BROKER_URL = "amqp://guest:guest@127.0.0.1:1/"  # never reached: refused first
    misfit = make_run(task_name="t-record", kwargs={"lable": "typo"}, status="failed")
    rejected = make_run(
        task_name="t-record",
        kwargs={"body_preview": '{"message_id": "x"'},
        status="failed",
        enqueued_by="broker (malformed message)",
    )
    response = action_post(operator_client, "retry_runs", [misfit, rejected], post="yes")
    assert response.status_code == 302
    assert not JobRun.objects.filter(retry_of__isnull=False).exists()
    notes = " ".join(messages_of(operator_client.get(response["Location"])))
    assert "2 run(s) not retried: their arguments no longer fit the task" in notes
    single = operator_client.post(run_url("retry", misfit))
    assert single.status_code == 302 and single["Location"] == run_url("change", misfit)
    assert JobRun.objects.count() == 2


@pytest.mark.django_db
def test_cancel_works_on_the_filtered_selection(operator_client):
    queued = [make_run(task_name="t-record", status="queued") for _ in range(3)]
    retrying = make_run(task_name="t-record", status="retrying")
    other_task = make_run(task_name="t-echo", status="queued")
    running = make_run(task_name="t-record", status="running")
    url = reverse(CHANGELIST) + "?task_name=t-record"
    confirm = action_post(operator_client, "cancel_runs", queued[:1], url=url, select_across="1")
    assert confirm.status_code == 200
    body = confirm.content.decode()
    assert "Cancel 4 runs?" in body and "1 other selected run will be left alone" in body
    assert 'name="select_across" value="1"' in body
    assert JobRun.objects.filter(status="cancelled").count() == 0

    done = action_post(operator_client, "cancel_runs", queued[:1], url=url, select_across="1", post="yes")
    assert done.status_code == 302 and done["Location"] == url
    assert set(JobRun.objects.filter(status="cancelled").values_list("pk", flat=True)) == {
        *(r.pk for r in queued),
        retrying.pk,
    }
    other_task.refresh_from_db()
    running.refresh_from_db()
    assert (other_task.status, running.status) == ("queued", "running")
    assert any("Cancelled 4 run(s)." in m for m in messages_of(operator_client.get(url)))


@pytest.mark.django_db
def test_cancel_button_on_the_detail_page(operator_client):
    run = make_run(status="queued")
    assert run_url("cancel", run) in operator_client.get(run_url("change", run)).content.decode()
    assert operator_client.get(run_url("cancel", run)).status_code == 200
    run.refresh_from_db()
    assert run.status == "queued"
    response = operator_client.post(run_url("cancel", run))
    assert response.status_code == 302 and response["Location"] == run_url("change", run)
    run.refresh_from_db()
    assert run.status == "cancelled"
    page = operator_client.get(run_url("change", run)).content.decode()
    assert run_url("cancel", run) not in page  # nothing left to cancel
    assert run_url("retry", run) not in page  # jobs run inline here: a retry could only be refused
    response = operator_client.post(run_url("cancel", run))
    assert any(
        "None of the selected runs is queued or retrying" in m
        for m in messages_of(operator_client.get(response["Location"]))
    )


# --- Dashboard -----------------------------------------------------------------------------------


def seed_dashboard(now: Any) -> None:
    def finished(task: str, status: str, seconds: float, ago: float) -> None:
        end = now - timedelta(seconds=ago)
        make_run(
            task_name=task,
            status=status,
            enqueued_at=end - timedelta(seconds=seconds + 1),
            started_at=end - timedelta(seconds=seconds),
            finished_at=end,
        )

    for seconds in (1, 2, 3):
        finished("t-record", "succeeded", seconds, ago=60)
    finished("t-record", "failed", 4, ago=120)
    finished("t-echo", "timed_out", 10, ago=300)
    finished("t-echo", "succeeded", 10, ago=7200)  # outside the last hour, inside the last day
    make_run(task_name="t-record", status="running", enqueued_at=now - timedelta(seconds=30))
    make_run(task_name="t-echo", status="queued", enqueued_at=now - timedelta(seconds=600))
    make_run(task_name="t-record", status="queued", enqueued_at=now - timedelta(seconds=20))
    make_run(task_name="t-echo", status="queued", enqueued_at=now - timedelta(days=3))  # the oldest


@pytest.mark.django_db
def test_dashboard_numbers(viewer_client):
    now = timezone.now()
    seed_dashboard(now)
    stats = dashboard_stats(timedelta(hours=1), now=now)
    assert stats.percentiles_from == "PostgreSQL percentile_cont"
    record = next(row for row in stats.tasks if row.task_name == "t-record")
    assert record.counts == {"succeeded": 3, "failed": 1, "running": 1, "queued": 1}
    assert (record.finished, record.failed, record.failure_rate) == (4, 1, 0.25)
    assert record.p50 == pytest.approx(2.5) and record.p95 == pytest.approx(3.85)
    assert (stats.total.finished, stats.total.failed) == (5, 2)
    assert stats.total.p50 == pytest.approx(3.0) and stats.total.p95 == pytest.approx(8.8)
    assert stats.throughput_per_minute == pytest.approx(5 / 60)
    assert (stats.running, stats.queued, stats.retrying) == (1, 3, 0)
    assert stats.oldest_queued is not None and stats.oldest_queued.enqueued_at == now - timedelta(days=3)

    body = viewer_client.get(reverse(DASHBOARD)).content.decode()
    assert re.search(r'id="fj-finished">5<', body)
    assert re.search(r'id="fj-failure-rate">40.0%<', body)
    assert re.search(r'id="fj-p50">3.00 s<', body) and re.search(r'id="fj-p95">8.80 s<', body)
    assert re.search(r'id="fj-running">1<', body) and re.search(r'id="fj-queued">3<', body)
    assert re.search(r'<tr data-task="t-record">.*?25.0%.*?2.50 s.*?3.85 s', body, re.S)
    assert "3\xa0days ago" in body or "3 days ago" in body
    day = viewer_client.get(reverse(DASHBOARD) + "?window=24h")
    assert day.context["stats"].total.finished == 6 and day.context["window_key"] == "24h"


@pytest.mark.django_db
def test_python_percentiles_match_postgresql():
    now = timezone.now()
    seed_dashboard(now)
    since = now - timedelta(days=1)
    rows: dict[str, TaskRow] = {}
    total = TaskRow("All tasks")
    python_finished_stats(finished_runs(JobRun.objects.all(), since, now), rows, total)
    database = dashboard_stats(timedelta(days=1), now=now)
    assert (total.finished, total.failed) == (database.total.finished, database.total.failed)
    assert total.p50 == pytest.approx(database.total.p50) and total.p95 == pytest.approx(database.total.p95)
    for row in database.tasks:
        if row.finished:
            assert rows[row.task_name].p95 == pytest.approx(row.p95)
    assert percentile([], 0.5) is None and percentile([4.0], 0.95) == 4.0


@pytest.mark.django_db
def test_dashboard_shows_the_jobs_badge_and_masks_the_broker_password(viewer_client, settings):
    body = viewer_client.get(reverse(DASHBOARD)).content.decode()
    assert '<span class="fj-badge fj-inline">inline</span>' in body and "No runs in this window." in body
    assert "disabled" not in body and "eager" not in body  # one neutral word for inline mode
    settings.FUSION_JOBS_BROKER_URL = "amqp://fj:sentinel-pw-9@127.0.0.1:5672/vh"
    body = viewer_client.get(reverse(DASHBOARD)).content.decode()
    assert (
        '<span class="fj-badge fj-enabled">broker</span>' in body
        and "amqp://fj:***@127.0.0.1:5672/vh" in body
    )
    assert "sentinel-pw-9" not in body


@pytest.mark.django_db
def test_dashboard_is_linked_from_the_admin_index(viewer_client, make_user):
    index = viewer_client.get(reverse("admin:index")).content.decode()
    entry = reverse("admin:fusion_jobs_jobsdashboard_changelist")
    assert f'href="{entry}"' in index
    response = viewer_client.get(entry)
    assert response.status_code == 302 and response["Location"] == reverse(DASHBOARD)
    outsider = Client()
    outsider.force_login(make_user("outsider", "view_cronschedule"))
    assert entry not in outsider.get(reverse("admin:index")).content.decode()


@pytest.mark.django_db
def test_cron_runs_link_to_their_schedule(admin_client):
    cron = CronSchedule.objects.create(name="nightly", task_name="t-record", expression="0 3 * * *")
    run = make_run(cron=cron, scheduled_for=timezone.now())
    body = admin_client.get(run_url("change", run)).content.decode()
    assert reverse("admin:fusion_jobs_cronschedule_change", args=[cron.pk]) in body
