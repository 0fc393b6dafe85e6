"""The web console's browser tests: one real ``zeroserve up`` per test module (its own data directory, a
free port, the iris model registered as an artifact, nothing deployed), the operator's client id and secret
it wrote, one headless Debian Chromium driven by Playwright per module, and a fresh page (1280x800) per test.

Playwright's own browser download cannot work here: the browser is Debian's ``chromium`` (``make test``
installs it). Outside ``make test`` the tests are skipped, with the reason, where it is missing; under
``make test`` (``CONSOLE_BROWSER_REQUIRED=1``) a missing browser fails them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from .harness import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, RunningZeroserve, register_iris, start_zeroserve, stop_zeroserve


@pytest.fixture(scope="module")
def zeroserve_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningZeroserve]:
    """A real ``zeroserve up`` for the module, with the iris model registered (not deployed)."""
    process, running = start_zeroserve(tmp_path_factory.mktemp("console"),
                                       settings={"ZEROSERVE_IDLE_WINDOW_S": "300"})
    try:
        register_iris(running)
        yield running
    finally:
        stop_zeroserve(process)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (never Playwright's own download)."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: `make test` installs Debian's chromium (or: apt-get install chromium)"
        if os.environ.get("CONSOLE_BROWSER_REQUIRED") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, zeroserve_up: RunningZeroserve) -> Iterator[Any]:
    """A fresh browser context (no cookie) and page at 1280x800; any script error on it fails the test."""
    context = browser.new_context(viewport=VIEWPORT, base_url=zeroserve_up.url)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.on("console", lambda message: errors.append(message.text) if message.type == "error"
              and "Content Security Policy" in message.text else None)
    opened.set_default_timeout(20_000)
    yield opened
    context.close()
    assert errors == [], f"the page reported errors: {errors}"
