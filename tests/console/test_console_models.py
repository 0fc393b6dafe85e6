"""The console's models, compare, events and admin pages, in a real browser (headless Debian Chromium)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx
import pytest

from .harness import VIEWPORT, RunningZeroserve

pytestmark = pytest.mark.slow
PlaywrightTimeout = pytest.importorskip("playwright.sync_api").TimeoutError
TIMEOUT_MS = 15_000


def model_file(zeroserve: RunningZeroserve, name: str) -> str:
    path = zeroserve.data_dir / "sources" / name / "model.joblib"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not really a model")
    return path.as_uri()


def publish(api: httpx.Client, data: dict[str, Any]) -> None:
    answer = api.post("/v2/events", headers={"Content-Type": "application/cloudevents+json"}, content=json.dumps({
        "specversion": "1.0", "id": str(uuid.uuid4()), "source": "/ci/train", "type": "io.zeroserve.artifact.created",
        "data": data}))
    assert answer.status_code == 202, answer.text


def signed_in(browser: Any, zeroserve: RunningZeroserve, client: tuple[str, str]) -> Any:
    """A page of a new browser context, signed in as ``client`` (the console's session cookie)."""
    context = browser.new_context(viewport=VIEWPORT, base_url=zeroserve.url)
    answer = context.request.post("/console/session", data={"clientId": client[0], "clientSecret": client[1]})
    assert answer.status == 204, answer.text()
    return context.new_page()


def test_two_models_compared_their_origin_shown_and_events_live(zeroserve_up: RunningZeroserve, page, browser):
    console_url = zeroserve_up.console
    api = zeroserve_up.api()
    page.context.request.post("/console/session", data={"clientId": zeroserve_up.client_id,
                                                         "clientSecret": zeroserve_up.client_secret})
    # One model by an artifact.created event, with its metrics and the settings of its run.
    publish(api, {"id": "iris-lr-small", "name": "iris-small", "url": model_file(zeroserve_up, "small"),
                  "scenarioId": "model-serving", "labels": [{"key": "learning_rate", "value": "0.01"}],
                  "run": "train-42", "parameters": {"learning_rate": "0.01", "epochs": "10"},
                  "metrics": [{"name": "accuracy", "value": 0.91}, {"name": "loss", "value": 0.30,
                                                                    "labels": [{"key": "epochs", "value": "10"}]}]})
    # One by the API, its metrics sent after with PATCH /v2/lm/metrics.
    created = api.post("/v2/lm/artifacts", json={"name": "iris-large", "kind": "model", "scenarioId": "model-serving",
                                                  "url": model_file(zeroserve_up, "large"),
                                                  "labels": [{"key": "ext.ai.sap.com/learning_rate", "value": "0.1"}]})
    assert created.status_code == 201, created.text
    large = created.json()["id"]
    metrics = [{"name": "accuracy", "value": 0.97, "timestamp": "2026-12-05T10:00:00Z", "step": 2,
                "labels": [{"name": "epochs", "value": "50"}]},
               {"name": "loss", "value": 0.12, "timestamp": "2026-12-05T10:00:00Z", "step": 2, "labels": []}]
    patched = api.patch("/v2/lm/metrics", json={"executionId": large, "metrics": metrics})
    assert patched.status_code == 204, patched.text

    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{console_url}#/models")
    page.get_by_role("heading", name="Models", level=1).wait_for()
    # The event's model is registered by its function: the page may need a reload to list it.
    for _ in range(20):
        if page.get_by_role("link", name="iris-small").count() and page.get_by_text("accuracy 0.97").count():
            break
        page.wait_for_timeout(250)
        page.reload()
        page.get_by_role("heading", name="Models", level=1).wait_for()
    page.get_by_label("Select iris-small").check()
    page.get_by_label("Select iris-large").check()
    page.get_by_role("button", name="Compare 2 models").click()

    page.get_by_role("heading", name="Compare models").wait_for()
    chart = page.locator("canvas[aria-label*='iris-small'][aria-label*='iris-large']")
    chart.wait_for()  # one grouped bar chart of both models' metrics
    best = page.locator("table .best")
    best.nth(1).wait_for()
    marked = sorted(re.match(r"★ [\d.]+", text.strip())[0] for text in best.all_inner_texts())
    assert marked == ["★ 0.12", "★ 0.97"], "the higher accuracy and the lower loss are marked best"
    row = page.get_by_role("row", name="accuracy")
    assert "0.91" in row.inner_text() and "0.97" in row.inner_text()
    assert page.locator("mark.differs").count() >= 2, "the settings that differ are highlighted"

    page.goto(f"{console_url}#/models/iris-lr-small")
    page.get_by_role("heading", name="Origin").wait_for()
    page.get_by_role("heading", name="Deployments serving it").wait_for()
    page.get_by_text("An artifact.created event").wait_for()
    page.get_by_text("train-42").wait_for()  # the source run, and the parameters it was trained with
    page.get_by_role("row", name="epochs 10", exact=True).wait_for()

    page.goto(f"{console_url}#/events")
    page.get_by_text("Live.").wait_for()
    # The page cannot tell when its stream has reached the gateway: events are published until one arrives.
    # (each one's own artifact.created: a status event can arrive for one published before the stream began)
    arrived = page.locator("li.event", has_text="iris-live").filter(has_text="artifact.created")
    for attempt in range(20):
        publish(api, {"id": f"iris-live-{attempt}", "name": "iris-live", "url": model_file(zeroserve_up, "live")})
        try:
            arrived.first.wait_for(timeout=1000)
            break
        except PlaywrightTimeout:
            continue
    assert arrived.count() >= 1, "a new event appears on the events page as it happens"

    # A client of one group sees no Admin, and the page says why.
    reader_client = api.post("/v2/admin/clients", json={"groups": ["default"]}).json()
    reader = signed_in(browser, zeroserve_up, (reader_client["clientId"], reader_client["clientSecret"]))
    try:
        reader.set_default_timeout(TIMEOUT_MS)
        reader.goto(f"{console_url}#/models")
        reader.get_by_role("heading", name="Models", level=1).wait_for()
        assert reader.get_by_role("link", name="Admin").count() == 0
        reader.goto(f"{console_url}#/admin")
        reader.get_by_text("Admin is for operators").wait_for()
    finally:
        reader.context.close()
    assert page.get_by_role("link", name="Admin").count() == 1
