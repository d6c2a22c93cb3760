"""Each user's own digest time: a runtime schedule per user next to the six declared crons."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.test import Client

from example.agent import digest, schedules
from example.agent.crons import AGENT_CRONS
from example.agent.models import MessageKind, OutboundMessage
from fusion_jobs.models import CronSchedule
from fusion_jobs.registry import get_task
from fusion_jobs.scheduler.declare import declared_names, load_declarations, mark_orphans

pytestmark = pytest.mark.django_db

URL = "/agent/digest/"


def test_a_user_sets_their_time_and_zone_and_gets_a_runtime_schedule(make_user) -> None:
    ada = make_user("ada")
    client = Client()
    client.force_login(ada)
    assert "shared briefing at 07:30" in client.get(URL).content.decode()
    response = client.post(URL, {"at": "06:45", "timezone": "Australia/Sydney"}, follow=True)
    assert "daily at 06:45 (Australia/Sydney)" in response.content.decode()
    row = CronSchedule.objects.get(name=f"agent-digest-user-{ada.pk}")
    assert (row.origin, row.task_name, row.expression, row.timezone, row.input) == (
        "runtime",
        "agent-user-digest-tick",
        "45 6 * * *",
        "Australia/Sydney",
        {"user_id": ada.pk, "timezone": "Australia/Sydney"},
    )
    local = row.next_fire_at.astimezone(ZoneInfo("Australia/Sydney"))
    assert (local.hour, local.minute) == (6, 45)
    assert "Next: " in client.get(URL).content.decode()
    # Changed, then back to the shared briefing.
    client.post(URL, {"at": "21:00", "timezone": "Europe/Berlin"})
    row.refresh_from_db()
    assert (row.expression, row.timezone) == ("0 21 * * *", "Europe/Berlin")
    client.post(URL, {"clear": "1"})
    assert not CronSchedule.objects.filter(name=f"agent-digest-user-{ada.pk}").exists()


def test_the_next_briefings_are_shown_in_the_users_zone_and_an_admin_edit_does_not_break_the_page(
    make_user,
) -> None:
    ada = make_user("ada")
    client = Client()
    client.force_login(ada)
    client.post(URL, {"at": "02:30", "timezone": "Europe/Berlin"})
    page = client.get(URL).content.decode()
    nxt = page.split("Next: ", 1)[1].split("</p>", 1)[0]
    # The project's TIME_ZONE is UTC: 02:30 in Berlin is 01:30 or 00:30 UTC, not what the user chose.
    assert nxt.count(" 02:30") == 3, nxt
    # A runtime schedule can be edited in the admin to any expression; the user's page still opens.
    CronSchedule.objects.filter(name=f"agent-digest-user-{ada.pk}").update(expression="*/30 6-9 * * 1-5")
    response = client.get(URL)
    assert response.status_code == 200
    assert "*/30 6-9 * * 1-5" in response.content.decode()


def test_a_user_who_is_not_staff_logs_in_and_finds_their_briefing_page(make_user) -> None:
    """Every user of the example has a briefing; the admin's login page turns away all but staff."""
    make_user("ada", password="a-long-pass-phrase")
    client = Client()
    login = client.get(URL, follow=True)
    assert login.status_code == 200 and 'name="password"' in login.content.decode()
    response = client.post(
        login.redirect_chain[-1][0], {"username": "ada", "password": "a-long-pass-phrase"}, follow=True
    )
    assert response.redirect_chain[-1][0] == URL
    assert "Your daily briefing" in response.content.decode()
    assert f'href="{URL}"' in client.get("/").content.decode()  # a page links to it


def test_the_zone_choices_are_places_not_the_hosts_setting(make_user) -> None:
    ada = make_user("ada")
    client = Client()
    client.force_login(ada)
    page = client.get(URL).content.decode()
    assert '<option value="Europe/Berlin">' in page and '<option value="localtime">' not in page
    response = client.post(URL, {"at": "06:45", "timezone": "localtime"})
    assert response.status_code == 200 and "not one of the available choices" in response.content.decode()


def test_the_page_needs_a_login() -> None:
    response = Client().get(URL)
    assert response.status_code == 302 and "login" in response["Location"]


def test_a_restart_keeps_the_users_schedule_and_the_six_declared_crons_as_they_are(
    make_user, settings
) -> None:
    settings.FUSION_JOBS_CRON_REGISTRARS = ["example.agent.crons.register_agent_cron"]
    ada = make_user("ada")
    schedules.set_user_digest(ada, time(6, 45), "Europe/Berlin")
    assert load_declarations().errors == []
    mark_orphans(declared_names())  # what a runcrons start does
    declared = {
        row.name: row.expression for row in CronSchedule.objects.filter(origin="declared", orphaned=False)
    }
    assert {cron.name: cron.expression for cron in AGENT_CRONS}.items() <= declared.items()
    assert len([name for name in declared if not name.startswith("fusion-jobs-")]) == 6
    mine = CronSchedule.objects.get(name=f"agent-digest-user-{ada.pk}")
    assert (mine.origin, mine.active) == ("runtime", True)


def test_one_briefing_a_day_whichever_cron_sends_it(t0: datetime, make_user, make_document) -> None:
    own, shared = make_user("own"), make_user("shared")
    for user in (own, shared):
        make_document(user, processed_at=t0 - timedelta(hours=1))
    schedules.set_user_digest(own, time(5, 0), "Pacific/Auckland")
    first = digest.queue_digests(now=t0)  # the shared 07:30 cron
    assert first["queued"] == 1
    assert OutboundMessage.objects.get(kind=MessageKind.DIGEST).user == shared
    mine = digest.queue_digests(now=t0, user_id=own.pk, zone="Pacific/Auckland")
    assert mine["queued"] == 1
    # Dated in the user's zone (Auckland is ahead of UTC).
    local_day = t0.astimezone(ZoneInfo("Pacific/Auckland")).date().isoformat()
    assert mine["day"] == local_day
    message = OutboundMessage.objects.get(kind=MessageKind.DIGEST, user=own)
    assert local_day in message.subject
    assert (
        digest.queue_digests(now=t0 + timedelta(minutes=1), user_id=own.pk, zone="Pacific/Auckland")[
            "already_queued"
        ]
        == 1
    )


def test_the_users_digest_task_runs_through_the_registry(make_user, make_document) -> None:
    ada = make_user("ada")
    make_document(ada, processed_at=datetime.now(UTC) - timedelta(hours=1))
    task: Any = get_task("agent-user-digest-tick")
    assert task(user_id=ada.pk, timezone="UTC")["queued"] == 1
