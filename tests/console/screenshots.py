"""The console's main pages as PNGs (``make console-screenshots``): a fresh ``zeroserve up`` in a temporary
directory, the iris model registered and deployed, called once from zero (a cold start) and a few times
warm, then Debian's Chromium at 1280x800 signs in and photographs each page into the folder given
(docs/console/ by default).

    python tests/console/screenshots.py docs/console
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402 (run as a script: its folder is on the path)
    CHROMIUM,
    CHROMIUM_ARGS,
    VIEWPORT,
    RunningZeroserve,
    register_iris,
    sign_in,
    start_zeroserve,
    stop_zeroserve,
)

from zeroserve.demo import SAMPLE, SCENARIO_ID  # noqa: E402


def deploy_iris(zeroserve: RunningZeroserve, artifact_id: str) -> str:
    """The iris model deployed through the API, RUNNING and called: once cold, then warm."""
    with zeroserve.api() as api:
        configuration = api.post("/v2/lm/configurations", json={
            "name": "iris", "executableId": "sklearn", "scenarioId": SCENARIO_ID,
            "parameterBindings": [{"key": "resourcePlan", "value": "starter"}],
            "inputArtifactBindings": [{"key": "model", "artifactId": artifact_id}]}).json()["id"]
        deployment = api.post("/v2/lm/deployments", json={"configurationId": configuration}).json()["id"]
        deadline = time.monotonic() + 120
        while api.get(f"/v2/lm/deployments/{deployment}").json()["status"] != "RUNNING":
            if time.monotonic() > deadline:
                raise SystemExit(f"deployment {deployment} did not reach RUNNING")
            time.sleep(0.3)
        url = f"{zeroserve.url}/v2/inference/deployments/{deployment}/v1/models/{deployment}:predict"
        for _ in range(12):
            api.post(url, json=SAMPLE).raise_for_status()
    return deployment


def settle(page: Any, selector: str) -> None:
    page.wait_for_selector(selector)
    page.wait_for_timeout(700)  # charts drawn, live streams connected


def photograph(zeroserve: RunningZeroserve, deployment: str, artifact_id: str, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    written = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport=VIEWPORT, base_url=zeroserve.url).new_page()
        page.goto("/console/")
        settle(page, "#client-id")
        page.screenshot(path=str(out / "sign-in.png"))
        written.append(out / "sign-in.png")
        sign_in(page, zeroserve)
        settle(page, "#deployment-list table")
        shots = [
            ("deployments", "#/deployments", "#deployment-list table", False),
            ("deployment", f"#/deployments/{deployment}", "#cold-starts", True),
            ("deploy", "#/deploy", "#preview", True),
            ("models", "#/models", "main h1", False),
            ("model", f"#/models/{artifact_id}", "main h1", True),
            ("compare", f"#/compare?ids={artifact_id}", "main h1", False),
            ("events", "#/events", "main h1", False),
        ]
        for name, hash_, selector, full in shots:
            page.evaluate(f"location.hash = {hash_!r}")
            settle(page, selector)
            if name == "deploy":
                page.get_by_role("button", name="Preview the InferenceService").click()
                settle(page, "#rendered-yaml")
            target = out / f"{name}.png"
            page.screenshot(path=str(target), full_page=full)
            written.append(target)
        browser.close()
    return written


def main(out: Path) -> None:
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="zeroserve-screenshots-") as directory:
        process, zeroserve = start_zeroserve(Path(directory))
        try:
            artifact_id = register_iris(zeroserve)
            deployment = deploy_iris(zeroserve, artifact_id)
            for path in photograph(zeroserve, deployment, artifact_id, out):
                print(path)
        finally:
            stop_zeroserve(process)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/console"))
