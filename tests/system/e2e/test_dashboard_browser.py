"""The jobs dashboard's charts in a real headless Chromium at 1280 px: drawn, inside the page, with tooltips.

Saves ``fusion-jobs-e2e-dashboard-day.png`` and ``fusion-jobs-e2e-dashboard-hour.png`` to the CI
artefacts directory (``$CI_ARTIFACTS``, default ``tests/artifacts/``) for a human to look at.
"""

from __future__ import annotations

import math
import random
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from fusion_jobs.models import JobRun
from fusion_jobs.rollup import refresh_rollup
from tests.system.e2e.admin_browser import WIDTH, _orm_beside_playwright, admin_page, browser  # noqa: F401
from tests.system.e2e.test_browser import SCREENSHOTS

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TASKS = {
    # name: (runs per 15 minutes at peak, median seconds, failure share)
    "documents.extract_text": (14, 2.5, 0.04),
    "documents.embed_chunks": (9, 6.0, 0.02),
    "agent.send_digest": (3, 0.8, 0.15),
    "<b>hostile</b> task": (1, 0.3, 0.5),
}


def seed_a_day() -> None:
    """A day of runs with a daily rhythm, one slow spell and a burst of failures: something to look at."""
    rng = random.Random(7)
    now = timezone.now()
    runs = []
    for step in range(24 * 60):  # one slot a minute
        ended = now - timedelta(minutes=step, seconds=rng.random() * 60)
        rhythm = 0.55 + 0.45 * math.sin(step / (24 * 60) * 2 * math.pi * 2)
        slow = 3.0 if 300 <= step < 360 else 1.0
        for task, (peak, median, failures) in TASKS.items():
            for _ in range(rng.randrange(0, max(1, round(peak * rhythm / 15 * 2)) + 1)):
                duration = median * slow * rng.lognormvariate(0, 0.5)
                wait = rng.lognormvariate(-1.5, 1.0) * (4 if 600 <= step < 640 else 1)
                burst = 0.6 if 100 <= step < 115 else 0.0
                status = "failed" if rng.random() < failures + burst else "succeeded"
                started = ended - timedelta(seconds=duration)
                runs.append(
                    JobRun(
                        task_name=task,
                        status=status,
                        attempts=1,
                        enqueued_at=started - timedelta(seconds=wait),
                        started_at=started,
                        finished_at=ended,
                    )
                )
    JobRun.objects.bulk_create(runs, batch_size=2000)


def test_the_dashboard_charts_fit_1280_px_with_titles_and_tooltips(admin_page: Any) -> None:  # noqa: F811 (the imported fixture)
    seed_a_day()
    refresh_rollup()
    for window, name in (("24h", "day"), ("1h", "hour")):
        admin_page.goto(f"/admin/fusion_jobs/jobrun/dashboard/?window={window}")
        charts = admin_page.locator("svg.fj-chart")
        assert charts.count() == 4
        page_width = admin_page.evaluate("document.documentElement.scrollWidth")
        assert page_width <= WIDTH, f"the {name} page scrolls sideways: {page_width} px"
        for i in range(4):
            box = charts.nth(i).bounding_box()
            assert box is not None and box["width"] > 400 and box["x"] + box["width"] <= WIDTH
            assert charts.nth(i).get_attribute("role") == "img"
        # Bars and points are drawn, each with its numbers in a tooltip.
        assert admin_page.locator("#fj-chart-throughput rect.fj-bar").count() > 10
        assert admin_page.locator("#fj-chart-duration rect.fj-hit title").count() > 10
        # The hostile task name is text, in the table and the picker.
        assert admin_page.locator("#fj-task-times tr[data-task='<b>hostile</b> task']").count() == 1
        assert admin_page.locator("#fj-task-times b").count() == 0
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        admin_page.locator(".fj-over-time").screenshot(
            path=str(SCREENSHOTS / f"fusion-jobs-e2e-dashboard-{name}.png")
        )
