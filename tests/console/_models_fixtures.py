"""Fixtures of the console's browser tests, until the console helper's ``tests/console/conftest.py`` (same names)
is merged: ``console_url`` (the console of a zeroserve, embedded in a thread), ``operator`` (the id and secret of a
client of every group), ``browser`` (headless Debian Chromium through Playwright) and ``page`` (signed in as
the operator through ``POST /console/session``). Without the console in this build, the console is a harness
named by ``ZEROSERVE_CONSOLE_HARNESS`` (a directory whose ``server.py`` has ``serve(upstream) -> (url, stop)``)
or the tests are skipped."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zeroserve.node import Node
from zeroserve.settings import Settings

CHROMIUM = "/usr/bin/chromium"
CONSOLE = Path(__file__).parents[2] / "zeroserve" / "console" / "static" / "index.html"


class Embedded:
    """A zeroserve running on an event loop of its own thread, for synchronous Playwright tests."""

    def __init__(self, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.node = Node(settings)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.call(self.node.__aenter__())

    def call(self, coroutine: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.call(self.node.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedded]:
    data = tmp_path_factory.mktemp("console")
    settings = Settings(data_dir=data / "zeroserve", gateway_port=0, idle_window_s=60, gpus=[],
                        retry_backoff_s=[0.05, 0.1, 0.2], max_deliver=3, file_roots=[data / "models"])
    running = Embedded(settings)
    yield running
    running.close()


@pytest.fixture(scope="module")
def console_url(embedded: Embedded) -> Iterator[str]:
    if CONSOLE.exists():
        yield f"{embedded.node.url}/console/"
        return
    harness = os.environ.get("ZEROSERVE_CONSOLE_HARNESS")
    if not harness:
        pytest.skip("the console shell is not in this build yet (and no ZEROSERVE_CONSOLE_HARNESS)")
    spec = importlib.util.spec_from_file_location("console_harness", Path(harness) / "server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    url, stop = module.serve(embedded.node.url)
    yield url
    stop()


def new_client(embedded: Embedded, groups: list[str]) -> tuple[str, str]:
    assert embedded.node.platform is not None
    client, secret = embedded.call(embedded.node.platform.auth.create_client(groups))
    return client.id, secret


@pytest.fixture(scope="module")
def operator(embedded: Embedded) -> tuple[str, str]:
    return new_client(embedded, ["*"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not shutil.which(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


def signed_in(browser: Any, console_url: str, client: tuple[str, str]) -> Any:
    """A page of a new browser context, signed in as ``client`` (the console's session cookie)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    answer = context.request.post(f"{console_url}session", data={"clientId": client[0], "clientSecret": client[1]})
    assert answer.status == 204, answer.text()
    return context.new_page()


@pytest.fixture
def page(browser: Any, console_url: str, operator: tuple[str, str]) -> Iterator[Any]:
    opened = signed_in(browser, console_url, operator)
    yield opened
    opened.context.close()
