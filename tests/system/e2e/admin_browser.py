"""Fixtures for admin pages in a real headless Chromium: import them into a test module to use them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.system.e2e.test_browser import browser  # noqa: F401  (the fixture: Debian's chromium)

#: The laptop width the admin pages must fit.
WIDTH = 1280


@pytest.fixture(autouse=True, scope="module")
def _orm_beside_playwright() -> Iterator[None]:
    # Playwright's sync API keeps an event loop in this thread (until the module's browser closes);
    # the ORM calls in the tests, and the database flush after each, are still synchronous.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


@pytest.fixture
def admin_page(browser: Any, live_server: Any, django_user_model: Any) -> Iterator[Any]:  # noqa: F811
    """A page logged in to the admin as a superuser, WIDTH px wide."""
    django_user_model.objects.create_superuser("root", "root@example.test", "pw")
    context = browser.new_context(base_url=live_server.url, viewport={"width": WIDTH, "height": 900})
    page = context.new_page()
    page.goto("/admin/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    yield page
    context.close()
