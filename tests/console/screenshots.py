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


def register_candidates(zeroserve: RunningZeroserve, artifact_id: str) -> list[str]:
    """Two trained candidates of the iris model, registered by artifact.created events with the run and the
    parameters that made them and their metrics (the same model file: the screenshots compare records)."""
    candidates = [("iris-lr-c01", "train-41", {"C": 0.1, "max_iter": 100}, {"accuracy": 0.91, "log_loss": 0.31}),
                  ("iris-lr-c10", "train-42", {"C": 10, "max_iter": 400}, {"accuracy": 0.97, "log_loss": 0.12})]
    with zeroserve.api() as api:
        url = api.get(f"/v2/lm/artifacts/{artifact_id}").json()["url"]
        for name, run, parameters, metrics in candidates:
            event = {"specversion": "1.0", "id": f"{name}-registered", "source": "/ci/iris-training",
                     "type": "io.zeroserve.artifact.created",
                     "data": {"id": name, "name": name, "url": url, "scenarioId": SCENARIO_ID, "run": run,
                              "parameters": parameters,
                              "metrics": [{"name": key, "value": value} for key, value in metrics.items()]}}
            api.post("/v2/events", json=event, headers={"Content-Type": "application/cloudevents+json"}
                     ).raise_for_status()
        deadline = time.monotonic() + 30
        while any(api.get(f"/v2/lm/artifacts/{name}").status_code != 200 for name, *_ in candidates):
            if time.monotonic() > deadline:
                raise SystemExit("the candidate models were not registered")
            time.sleep(0.2)
    return [name for name, *_ in candidates]


def settle(page: Any, selector: str) -> None:
    page.wait_for_selector(selector)
    page.wait_for_timeout(700)  # charts drawn, live streams connected


def photograph(zeroserve: RunningZeroserve, deployment: str, artifact_id: str, candidates: list[str], out: Path,
               ) -> list[Path]:
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
            ("model", f"#/models/{candidates[1]}", "main h1", True),
            ("compare", f"#/compare?ids={','.join(candidates)}", "main canvas", True),
            ("events", "#/events", "main h1", False),
        ]
        for name, hash_, selector, full in shots:
            page.evaluate(f"location.hash = {hash_!r}")
            settle(page, selector)
            if name == "deploy":
                page.get_by_label("Model artifact").select_option(artifact_id)
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
            candidates = register_candidates(zeroserve, artifact_id)
            for path in photograph(zeroserve, deployment, artifact_id, candidates, out):
                print(path)
        finally:
            stop_zeroserve(process)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/console"))
