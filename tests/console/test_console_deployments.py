"""The console's deployments, in a real browser against a real zeroserve: sign in, deploy the iris model
through the deploy page (the API's refusal beside its field, then the InferenceService shown first), watch
it reach RUNNING on its page and on the list (and another one, deployed while the list is open, reach
RUNNING and then STOPPED there without a reload), call it and see its cold start in the chart's table, stop
and delete it after confirming; a wrong secret and an expired session each say so.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from playwright.sync_api import expect

from zeroserve.auth import ISSUER

from .harness import RunningZeroserve, sign_in

pytestmark = pytest.mark.slow

# Set on the page once: still there at the end means the page never reloaded.
NO_RELOAD = "window.__sameDocument = true"


def test_a_wrong_secret_is_told_and_the_right_one_opens_the_deployments(page: Any,
                                                                         zeroserve_up: RunningZeroserve) -> None:
    sign_in(page, zeroserve_up, secret="not-the-secret")
    expect(page.get_by_role("alert")).to_have_text("Wrong client id or secret.")
    expect(page.get_by_label("Client secret")).to_be_focused()
    page.get_by_label("Client secret").fill(zeroserve_up.client_secret)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Deployments", level=1)).to_be_visible()
    expect(page.get_by_text("No deployments in group default yet. Deploy one.")).to_be_visible()
    # The token is in an HttpOnly cookie: no page script can read it.
    assert page.evaluate("document.cookie") == ""
    [cookie] = page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["name"] == "zeroserve_console"


def test_deploy_watch_it_run_call_it_then_stop_and_delete_it(page: Any, zeroserve_up: RunningZeroserve) -> None:
    sign_in(page, zeroserve_up)
    page.get_by_role("link", name="Deploy", exact=True).click()
    expect(page.get_by_label("Model artifact").locator("option:checked")).to_contain_text("iris")
    expect(page.get_by_label("Executable (serving template)")).to_have_value("sklearn")
    deploy = page.get_by_role("button", name="Deploy", exact=True)
    expect(deploy).to_be_disabled()  # not before the InferenceService is shown

    # A value the API refuses: its own message, beside the field it names.
    page.get_by_text("Template parameters").click()
    page.get_by_label("maxReplicas").fill("many")
    page.get_by_role("button", name="Preview the InferenceService").click()
    expect(page.locator("#param-maxReplicas-error")).to_have_text(
        "InferenceService spec.predictor.maxReplicas: 'many' is not of type 'integer'")
    expect(page.get_by_label("maxReplicas")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("maxReplicas").fill("")
    page.get_by_label("Resource plan").select_option("starter")
    page.get_by_role("button", name="Preview the InferenceService").click()
    rendered = page.locator("#rendered-yaml")
    expect(rendered).to_contain_text("kind: InferenceService")
    expect(rendered).to_contain_text("serving.kserve.io/deploymentMode: Knative")
    expect(rendered).to_contain_text("sklearn")
    expect(deploy).to_be_enabled()
    page.evaluate(NO_RELOAD)
    deploy.click()

    page.wait_for_url("**/console/#/deployments/*")
    deployment_id = page.url.rsplit("/", 1)[1]
    badge = page.locator("#deployment-status")
    expect(badge).to_have_text("RUNNING", timeout=30_000)
    expect(page.locator("#timeline")).to_contain_text("RUNNING")

    # The list shows it RUNNING too, with its URL; one deployed meanwhile (from the API) appears and
    # reaches RUNNING on it while it is open.
    page.get_by_role("link", name="Deployments", exact=True).click()
    row = page.locator(f'tr[data-key="{deployment_id}"]')
    expect(row).to_contain_text("RUNNING")
    expect(row).to_contain_text(f"/v2/inference/deployments/{deployment_id}")
    with zeroserve_up.api() as api:
        configuration = api.get(f"/v2/lm/deployments/{deployment_id}").json()["configurationId"]
        another = api.post("/v2/lm/deployments", json={"configurationId": configuration}).json()["id"]
        expect(page.locator(f'tr[data-key="{another}"]')).to_contain_text("RUNNING", timeout=30_000)
        api.patch(f"/v2/lm/deployments/{another}", json={"targetStatus": "STOPPED"}).raise_for_status()
    expect(page.locator(f'tr[data-key="{another}"]')).to_contain_text("STOPPED", timeout=30_000)
    row.get_by_role("link", name=deployment_id).click()

    # Called from zero: a cold start, and its phases in the chart's table.
    expect(page.locator("#cold-start-table")).to_contain_text("No cold start yet")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#try-status")).to_have_text("200 OK", timeout=30_000)
    expect(page.locator("#try-result")).to_contain_text("X-Cold-Start: true")
    expect(page.locator("#try-answer")).to_contain_text("predictions")
    cold_start = page.locator("#cold-starts tbody tr")
    expect(cold_start).to_have_count(1)
    expect(page.locator("#cold-start-chart canvas")).to_be_visible()
    expect(page.locator("#replicas")).to_contain_text("ready")
    # The example call names the real URL and never the token.
    code = page.locator("#call-code")
    expect(code).to_contain_text(f"{zeroserve_up.url}/v2/inference/deployments/{deployment_id}/v1/models/")
    expect(code).to_contain_text("$TOKEN")

    # Stop: asked first; cancelling does nothing, confirming stops it.
    page.get_by_role("button", name="Stop").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Stop deployment {deployment_id}?")
    dialog.get_by_role("button", name="Cancel").click()
    expect(badge).to_have_text("RUNNING")
    page.get_by_role("button", name="Stop").click()
    page.get_by_role("dialog").get_by_role("button", name="Stop").click()
    expect(badge).to_have_text("STOPPED", timeout=30_000)
    expect(page.locator("#timeline")).to_contain_text("STOPPED")

    # Delete, confirmed: back to the list, where it is gone.
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    page.wait_for_url("**/console/#/deployments")
    expect(page.locator(f'tr[data-key="{deployment_id}"]')).to_have_count(0, timeout=30_000)
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"


def test_an_expired_session_goes_back_to_sign_in_with_the_reason(page: Any, zeroserve_up: RunningZeroserve) -> None:
    sign_in(page, zeroserve_up)
    expect(page.get_by_role("heading", name="Deployments", level=1)).to_be_visible()
    # The session's token runs out: as if its lifetime had passed (signed with this zeroserve's key).
    key = (zeroserve_up.data_dir / "token.key").read_bytes()
    lapsed = jwt.encode({"iss": ISSUER, "sub": zeroserve_up.client_id, "groups": ["*"], "iat": int(time.time()) - 60,
                         "exp": int(time.time()) - 1}, key, algorithm="HS256")
    page.context.add_cookies([{"name": "zeroserve_console", "value": lapsed, "url": zeroserve_up.url,
                               "httpOnly": True, "sameSite": "Strict"}])
    # The next call with it (the page's own, or this navigation's, whichever is first) is refused.
    page.evaluate("location.hash = '#/deploy'")
    expect(page.get_by_role("heading", name="Sign in to zeroserve")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_text("Your session expired, sign in again")
    sign_in(page, zeroserve_up)
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
