"""A real headless browser for the dashboard: Debian's chromium driven by Playwright (its own
browser download is not used). Tests that need it skip, saying why, when either is missing;
tests/server/dashboard/test_pages.py covers the same features without a browser."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped: while Playwright's sync API is open, its event loop runs in the main
    thread, and every later `asyncio.run()` of the session (the ssh transport's) would fail."""
    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed: apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[dev]'")
    with sync_playwright() as driver:
        launched = driver.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    yield opened
    context.close()
