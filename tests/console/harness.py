"""What the console's browser tests and its screenshots share: a real ``zeroserve up`` in a directory of its
own (``start_zeroserve``), the iris model registered in it (``register_iris``), Debian's Chromium as Playwright
launches it, and signing in through the form (``sign_in``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 800}
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class RunningZeroserve:
    """A ``zeroserve up`` process: its gateway, data directory and the operator's credentials."""

    url: str
    data_dir: Path
    client_id: str
    client_secret: str
    log: Path

    @property
    def console(self) -> str:
        return f"{self.url}/console/"

    def token(self) -> str:
        answer = httpx.post(f"{self.url}/oauth/token", data={"grant_type": "client_credentials"},
                            auth=(self.client_id, self.client_secret), timeout=30)
        answer.raise_for_status()
        return str(answer.json()["access_token"])

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token()}"}, timeout=60)


def start_zeroserve(directory: Path, *extra: str, settings: dict[str, str] | None = None,
                    ) -> tuple[subprocess.Popen[bytes], RunningZeroserve]:
    """``zeroserve up`` in ``directory`` on a free port, once its gateway answers."""
    data_dir = directory / ".zeroserve"
    env = {**os.environ, "ZEROSERVE_DATA_DIR": str(data_dir), "ZEROSERVE_GATEWAY_PORT": "0", "ZEROSERVE_GPUS": "[]",
           "XDG_CONFIG_HOME": str(directory / "config"), "HF_HUB_OFFLINE": "1", **(settings or {}),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    for setting in ("ZEROSERVE_API_URL", "ZEROSERVE_TOKEN", "ZEROSERVE_CLIENT_ID", "ZEROSERVE_CLIENT_SECRET",
                    "ZEROSERVE_RESOURCE_GROUP", "ZEROSERVE_PROFILE"):
        env.pop(setting, None)
    log = directory / "zeroserve-up.log"
    with log.open("wb") as output:
        process = subprocess.Popen([sys.executable, "-m", "zeroserve.cli", "up", *extra], cwd=directory, env=env,
                                   stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"zeroserve up stopped:\n{log.read_text()}")
        credentials, url_file = data_dir / "credentials.json", data_dir / "gateway.url"
        if credentials.exists() and url_file.exists():
            known = json.loads(credentials.read_text())
            url = url_file.read_text().strip()
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    return process, RunningZeroserve(url, data_dir, known["client_id"], known["client_secret"], log)
            except httpx.TransportError:
                pass
        time.sleep(0.1)
    stop_zeroserve(process)
    raise AssertionError(f"zeroserve up did not answer within 120 s:\n{log.read_text()}")


def stop_zeroserve(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def register_iris(zeroserve: RunningZeroserve) -> str:
    """The demo's iris model, trained into the data directory and registered as an artifact: its id."""
    from zeroserve.demo import SCENARIO_ID, train_iris

    model = train_iris(zeroserve.data_dir / "models-in" / "iris")
    with zeroserve.api() as api:
        created = api.post("/v2/lm/artifacts", json={
            "name": "iris", "kind": "model", "url": model.resolve().as_uri(), "scenarioId": SCENARIO_ID,
            "description": "scikit-learn logistic regression on the iris data set"})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def sign_in(page: Any, zeroserve: RunningZeroserve, secret: str | None = None) -> None:
    """Through the sign-in form, as a user does."""
    page.goto("/console/")
    page.get_by_label("Client id").fill(zeroserve.client_id)
    page.get_by_label("Client secret").fill(secret if secret is not None else zeroserve.client_secret)
    page.get_by_role("button", name="Sign in").click()
