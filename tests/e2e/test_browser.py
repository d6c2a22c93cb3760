"""End to end in a real headless Chromium: the example served by ``runserver`` on SQLite, jobs inline.

Upload a PDF generated here, watch it become ready, find its phrase with search (with the page it is
on), then check the jobs sandbox: the live badge and a demo job run to completion. Screenshots of the
home page and the sandbox are written to /tmp for a human to look at.

Drives Debian's /usr/bin/chromium through Playwright's Python package (never a downloaded browser).
Without Chromium the test is skipped, except under ``CI=true`` where that is a failure.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
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
SCREENSHOTS = Path("/tmp")
PHRASE = "quokka ledger reconciles at midnight"
TITLE = "Harbour audit e2e"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} and CI=true: install Debian's chromium (scripts/browser.sh does)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
        DJANGO_DEBUG="1",
    )
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    port = _free_port()
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
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(base + "/sandbox/jobs/status.json", timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"runserver did not come up:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.2)
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
        # The example serves no favicon; any other failed request is a bug on the pages under test.
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            errors.append(f"HTTP {response.status} {response.url}")

    page.on("response", on_response)
    page.set_default_timeout(30_000)
    yield page
    context.close()
    assert errors == [], f"errors while driving the pages: {errors}"


def test_upload_search_and_the_jobs_sandbox_in_a_real_browser(page: Any) -> None:
    from playwright.sync_api import expect

    # Home: the example's front page, with the way to the sandbox.
    page.goto("/")
    expect(page.get_by_role("heading", name="Background jobs for Django")).to_be_visible()
    expect(page.locator("header nav").get_by_role("link", name="Jobs sandbox")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "fusion-jobs-e2e-home.png"), full_page=True)

    # To the upload page through the nav; without a broker the upload is processed inline.
    page.locator("header nav").get_by_role("link", name="Documents").click()
    expect(page).to_have_url(re.compile(r"/documents/$"))
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
    page.screenshot(path=str(SCREENSHOTS / "fusion-jobs-e2e-search.png"), full_page=True)

    # The jobs sandbox: the badge, refreshed by polling without a reload.
    polls: list[str] = []
    page.on("request", lambda request: polls.append(request.url) if "status.json" in request.url else None)
    page.goto("/sandbox/jobs/")
    badge = page.locator("#jobs-badge")
    expect(badge).to_have_text("disabled · inline")
    expect(badge).to_have_class(re.compile(r"\bbadge-off\b"))
    expect(page.locator("#jobs-checked")).to_have_text(re.compile(r"^checked "))
    page.wait_for_timeout(4500)
    assert len(polls) >= 2, f"the badge was not polled every 2 s: {polls}"
    expect(page.locator("#schedules")).to_contain_text("proactive-agent-every-minute")
    expect(page.locator("#mailer-badge")).to_have_text("held")

    # Start the demo job and watch it finish.
    page.get_by_role("button", name="Run demo-count").click()
    status = page.locator("#demo-status")
    expect(status).to_have_attribute("data-status", "succeeded", timeout=30_000)
    expect(status).to_have_text("Succeeded")
    expect(page.locator("#demo-task")).to_have_text("demo-count")
    expect(page.locator("#demo-detail")).to_contain_text("result 10")
    page.screenshot(path=str(SCREENSHOTS / "fusion-jobs-e2e-sandbox.png"), full_page=True)
