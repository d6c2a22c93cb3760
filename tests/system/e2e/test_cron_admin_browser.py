"""The schedule list in a real headless Chromium at 1280 px: styled badges, every column on screen.

Without the admin stylesheet the state badges were dark text on dark green, and at 1280 px with
the filter sidebar open the State and Last run columns were past the right edge.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

import fusion_jobs
from fusion_jobs.models import CronSchedule, JobRun
from tests.system.e2e.admin_browser import WIDTH, _orm_beside_playwright, admin_page, browser  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_the_schedule_list_fits_1280_px_with_styled_badges(admin_page: Any) -> None:  # noqa: F811 (the imported fixture)
    # The example's longest names and expressions, with a last run each (its link and badge).
    for name, expr, zone in (
        ("agent-memory-consolidation-daily", "30 3 * * *", "UTC"),
        ("agent-delivery-retry-every-minute", "* * * * *", "UTC"),
        ("agent-digest-user-12345", "45 6 * * 1-5", "America/Argentina/ComodRivadavia"),
    ):
        row = fusion_jobs.ensure_cron(
            "t-cron-record", name, expr, {"label": "x"}, timezone=zone, misfire="all", max_lateness=3600
        )
        run = JobRun.objects.create(
            task_name="t-cron-record", status="succeeded", cron=row, scheduled_for=timezone.now()
        )
        CronSchedule.objects.filter(pk=row.pk).update(last_run=run)
    admin_page.goto("/admin/fusion_jobs/cronschedule/")
    # The list sits in a box that scrolls sideways: every column must end inside what it shows.
    results = admin_page.locator("#changelist .results").bounding_box()
    assert results is not None
    header = admin_page.locator("#result_list thead")
    for column in ("State", "Last run", "Next fire"):
        box = header.get_by_text(column, exact=True).bounding_box()
        assert box is not None and box["x"] + box["width"] <= results["x"] + results["width"], (column, box)
    widths = admin_page.evaluate(
        "(() => { const r = document.querySelector('#changelist .results');"
        " return [r.scrollWidth, r.clientWidth, document.documentElement.scrollWidth, window.innerWidth]; })()"
    )
    assert widths[0] <= widths[1] and widths[2] <= widths[3], widths  # no sideways scrolling
    badge = admin_page.locator(".fj-cron-active").first
    assert badge.evaluate("el => getComputedStyle(el).color") == "rgb(255, 255, 255)"
    admin_page.screenshot(path="/tmp/fusion-jobs-cron-admin-1280.png", full_page=True)


def test_the_add_form_previews_the_next_fires_while_typing(admin_page: Any) -> None:  # noqa: F811 (the imported fixture)
    from playwright.sync_api import expect

    admin_page.goto("/admin/fusion_jobs/cronschedule/add/")
    admin_page.fill("#id_timezone", "Australia/Sydney")
    admin_page.fill("#id_expression", "0 0 1 1 *")
    preview = admin_page.locator(".fj-cron-preview")
    expect(preview.locator("li")).to_have_count(5)
    expect(preview.locator("li").first).to_contain_text("00:00 Australia/Sydney")
    admin_page.fill("#id_expression", "0 0 1 jan5 *")
    expect(preview).to_contain_text("jan5")
