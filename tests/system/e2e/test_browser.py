"""End to end in a real headless Chromium: the example served by ``runserver`` on SQLite, jobs inline.

Log in, upload a PDF generated here, watch it become ready, find its phrase with search (with the page it
is on), check that a nonsense query finds nothing, then the jobs sandbox: the live badge and a demo job
run to completion; finally the admin's run list fits a 1280 px window. Screenshots of each step are
saved to ``$CI_ARTIFACTS`` (default ``tests/artifacts/``, git-ignored) for a human to look at.

Drives Debian's /usr/bin/chromium through Playwright's Python package (never a downloaded browser).
Without Chromium the test is skipped, except under ``CI=true`` where that is a failure.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = "/usr/bin/chromium"
IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = Path(os.environ.get("CI_ARTIFACTS") or ROOT / "tests" / "artifacts")
ADMIN_USER = "e2e-admin"
ADMIN_PASSWORD = "e2e-" + os.urandom(8).hex()  # created by manage.py prepare, never printed
PHRASE = "quokka ledger reconciles at midnight"
TITLE = "Harbour audit e2e"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} and CI=true: install Debian's chromium (scripts/browser.sh does)")
    pytest.skip(reason)


def _filler(topic: str, n: int) -> str:
    return " ".join(
        f"{topic} note {i}: the inspector walked the quay and wrote the figures down." for i in range(n)
    )


def _pdf() -> bytes:
    """Three pages; the phrase sits mid-page 2, over a chunk window away from either page break."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_font("Helvetica", size=11)
    pages = [
        _filler("Tugboat", 20),
        f"{_filler('Crane', 16)} Every night the {PHRASE}. {_filler('Weather', 16)}",
        _filler("Cargo", 20),
    ]
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 6, text)
    return bytes(pdf.output())


@pytest.fixture(scope="module")
def example_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``manage.py runserver`` against a fresh SQLite database, no broker (jobs inline), no SMTP."""
    tmp = tmp_path_factory.mktemp("e2e")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FUSION_JOBS_", "SMTP_", "DJANGO_SETTINGS_MODULE", "DATABASE_URL"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="example.settings",
        DATABASE_URL=f"sqlite:///{tmp / 'db.sqlite3'}",
        MEDIA_ROOT=str(tmp / "media"),
        PYTHONUNBUFFERED="1",
        DJANGO_DEBUG="1",  # runserver serves the static files (as scripts/run-example.sh)
    )
    migrate = subprocess.run(
        [sys.executable, "manage.py", "prepare"],
        cwd=ROOT,
        env={**env, "DJANGO_SUPERUSER_USERNAME": ADMIN_USER, "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    port = free_port()
    log_path = tmp / "runserver.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base + "/sandbox/jobs/status.json", proc, log_path, 30, ok=lambda _body: True)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        _unavailable(f"{CHROMIUM} is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright Python package is not installed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any, example_server: str) -> Iterator[Any]:
    context = browser.new_context(base_url=example_server, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"script error: {exc}"))

    def on_response(response: Any) -> None:
        # Any failed request (the favicon included) is a bug on the pages under test.
        if response.status >= 400:
            errors.append(f"HTTP {response.status} {response.url}")

    page.on("response", on_response)
    page.set_default_timeout(30_000)
    yield page
    context.close()
    assert errors == [], f"errors while driving the pages: {errors}"


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"fusion-jobs-e2e-{name}.png"), full_page=True)


def overflow(page: Any, selector: str) -> dict[str, int]:
    """How wide ``selector`` is against the box it sits in, and the page against the window."""
    return page.evaluate(
        """(selector) => {
            const el = document.querySelector(selector);
            const box = el.parentElement;
            return {content: el.scrollWidth, box: box.clientWidth,
                    page: document.documentElement.scrollWidth, window: window.innerWidth};
        }""",
        selector,
    )


def test_upload_search_and_the_jobs_sandbox_in_a_real_browser(page: Any) -> None:
    from playwright.sync_api import expect

    # Home: the example's front page, with the way to the sandbox; the jobs badge is one neutral word.
    page.goto("/")
    expect(page.get_by_role("heading", name="Background jobs for Django")).to_be_visible()
    expect(page.locator("header nav").get_by_role("link", name="Jobs sandbox")).to_be_visible()
    header_badge = page.locator("[data-jobs-badge]")
    expect(header_badge).to_have_text("inline")
    expect(header_badge).to_have_class(re.compile(r"\bbadge-neutral\b"))
    shot(page, "home")

    # Log in (uploading and starting jobs need it), through the admin's login form.
    page.goto("/admin/login/?next=/documents/")
    page.locator("#id_username").fill(ADMIN_USER)
    page.locator("#id_password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/documents/$"))

    # Upload; without a broker the upload is processed inline.
    upload = page.locator("form", has=page.locator('input[name="file"]'))
    upload.locator('input[name="file"]').set_input_files(
        {"name": "harbour-audit.pdf", "mimeType": "application/pdf", "buffer": _pdf()}
    )
    upload.locator('input[name="title"]').fill(TITLE)
    upload.get_by_role("button", name="Upload").click()

    # The document's page: it becomes ready (the page follows the job and reloads when it is done).
    expect(page).to_have_url(re.compile(r"/documents/\d+/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(TITLE)
    expect(page.locator(".doc-status-lg")).to_have_text("Ready", timeout=60_000)
    expect(page.locator('dd[data-field="pages"]')).to_have_text("3")
    shot(page, "document")

    # Search the phrase from the documents page: the passage comes back, cited with its page.
    page.goto("/documents/")
    page.get_by_role("searchbox", name="Search the documents").fill(PHRASE)
    page.get_by_role("searchbox", name="Search the documents").press("Enter")
    expect(page).to_have_url(re.compile(r"/documents/search/\?q=quokka"))
    hit = page.locator(".doc-results > li", has=page.locator("mark", has_text=re.compile("quokka", re.I)))
    expect(hit).to_have_count(1)
    expect(hit.locator(".doc-result-head a")).to_have_text(TITLE)
    expect(hit.locator(".doc-cite")).to_have_text("p. 2")
    expect(hit.locator(".doc-snippet")).to_contain_text(PHRASE)
    shot(page, "search")

    # A nonsense query finds nothing (the relevance floor), and says so.
    page.goto("/documents/search/?q=xqzv+blorft+wibble")
    expect(page.locator(".doc-results > li")).to_have_count(0)
    expect(page.get_by_text("No passage is close enough")).to_be_visible()

    # The jobs sandbox: the badge, refreshed by polling without a reload.
    polls: list[str] = []
    page.on("request", lambda request: polls.append(request.url) if "status.json" in request.url else None)
    page.goto("/sandbox/jobs/")
    badge = page.locator("#jobs-badge")
    expect(badge).to_have_text("inline")
    expect(badge).to_have_class(re.compile(r"\bbadge-neutral\b"))
    expect(page.locator("#jobs-checked")).to_have_text(re.compile(r"^checked "))
    page.wait_for_timeout(4500)
    assert len(polls) >= 2, f"the badge was not polled every 2 s: {polls}"
    expect(badge).to_have_text("inline")  # the poll keeps the same word
    expect(page.locator("#schedules")).to_contain_text("proactive-agent-every-minute")
    expect(page.locator("#mailer-badge")).to_have_text("held")
    expect(page.locator("#no-worker")).to_be_hidden()  # inline: no worker is needed

    # Start the demo job from the sandbox and watch it finish; it joins "Your recent runs".
    page.get_by_role("button", name="Run demo-count").click()
    status = page.locator("#demo-status")
    expect(status).to_have_attribute("data-status", "succeeded", timeout=30_000)
    expect(status).to_have_text("Succeeded")
    expect(page.locator("#demo-task")).to_have_text("demo-count")
    expect(page.locator("#demo-detail")).to_contain_text("result 10")
    expect(page.locator("#recent-runs")).to_contain_text("demo-count")
    expect(page.locator("#recent-runs")).to_contain_text("process-chat-document")  # the upload's run
    sandbox = overflow(page, "#recent-runs")
    assert sandbox["page"] <= sandbox["window"], f"the sandbox scrolls sideways at 1280 px: {sandbox}"
    shot(page, "sandbox")

    # The admin's run list fits a 1280 px window: every column visible, no sideways scrolling.
    page.goto("/admin/fusion_jobs/jobrun/")
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    fit = overflow(page, "#result_list")
    assert fit["content"] <= fit["box"], f"the run list overflows its box at 1280 px: {fit}"
    assert fit["page"] <= fit["window"], f"the page scrolls sideways at 1280 px: {fit}"
    for column in ("Enqueued at", "Started at", "Finished at", "Duration"):
        header = page.locator("#result_list thead th", has_text=column)
        box = header.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 1280, f"{column} is cut off: {box}"
    shot(page, "admin-runs")
