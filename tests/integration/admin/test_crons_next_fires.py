"""Issue 13 item 4: the schedule admin previews the next five fires, and a schedule that does
not fire (paused, disabled, orphaned) shows no next fire, in the list or on its page."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

import fusion_jobs
from fusion_jobs.models import CronSchedule

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:fusion_jobs_cronschedule_changelist")


@pytest.fixture
def client(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def declare(name: str, expr: str, tz: str, **fields: Any) -> CronSchedule:
    fusion_jobs.ensure_cron("t-cron-record", name, expr, {"label": name}, timezone=tz)
    CronSchedule.objects.filter(name=name).update(**fields)
    return CronSchedule.objects.get(name=name)


def page(client: Client, schedule: CronSchedule) -> str:
    response = client.get(reverse("admin:fusion_jobs_cronschedule_change", args=[schedule.pk]))
    assert response.status_code == 200
    return response.content.decode()


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_detail_page_lists_the_next_five_fires_in_the_zone_and_in_utc(client):
    schedule = declare("t-cron-preview", "30 2 * * *", "Europe/Berlin")
    text = text_of(page(client, schedule))
    ticks = fusion_jobs.next_fire_times("30 2 * * *", timezone="Europe/Berlin", count=6)
    assert len(ticks) == 6
    # The page was rendered just before the ticks were computed: its five are ticks[0:5] (or
    # ticks[1:6] had the clock just passed one).
    shown = [tick for tick in ticks if tick.strftime("%Y-%m-%d %H:%M") in text]
    assert len(shown) >= 5, text
    for tick in shown[:5]:
        assert tick.astimezone(UTC).strftime("%H:%M UTC") in text  # and in UTC
    assert "Europe/Berlin" in text and "UTC" in text


@pytest.mark.parametrize(
    "state",
    [{"paused": True}, {"enabled": False}, {"orphaned": True}],
    ids=["paused", "disabled", "orphaned"],
)
def test_a_schedule_that_does_not_fire_shows_no_next_fire(client, state):
    # Yearly on 14 July: the stored next fire (2041) and the next five ticks (2027-2031) are the
    # only places those years could appear on either page, whatever the date format.
    stored = datetime(2041, 7, 14, 9, 45, tzinfo=UTC)
    schedule = declare("t-cron-idle", "45 9 14 7 *", "UTC", next_fire_at=stored, **state)
    years = {str(stored.year)} | {str(t.year) for t in fusion_jobs.next_fire_times("45 9 14 7 *", count=5)}
    for html in (page(client, schedule), client.get(CHANGELIST).content.decode()):
        text = text_of(html)
        assert "t-cron-idle" in text
        assert not [year for year in years if year in text], f"{state}: a next fire is shown"


def test_an_active_schedule_shows_its_next_fire_in_the_list(client):
    stored = datetime(2041, 7, 14, 9, 45, tzinfo=UTC)
    declare("t-cron-busy", "45 9 14 7 *", "UTC", next_fire_at=stored)
    assert "2041" in text_of(client.get(CHANGELIST).content.decode())


def test_the_utc_time_carries_its_date_when_it_is_another_day(client):
    schedule = declare("t-cron-sydney", "0 0 * * *", "Australia/Sydney")
    text = text_of(page(client, schedule))
    [tick] = fusion_jobs.next_fire_times("0 0 * * *", timezone="Australia/Sydney", count=1)
    assert tick.strftime("%Y-%m-%d 00:00") in text
    assert tick.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") in text  # the day before, in UTC
