"""Serving templates managed by their users, SAP AI Core's way: a git repository registered through
/v2/admin/repositories, an application syncing a revision and path of it (/v2/admin/applications),
refreshed on demand and by a signed push webhook; each template becomes an executable of its group
without a restart, a broken one is refused with its line and reason, and a deployment keeps what it
was rendered with until it is updated. Real git repositories, made here; a real zeroserve."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import token_for, until
from models import IRIS_ROWS, train_iris_sklearn
from pydantic import SecretStr
from spec import assert_conforms
from standardwebhooks import Webhook
from typer.testing import CliRunner

from zeroserve.cli import app as cli_app
from zeroserve.node import Node
from zeroserve.settings import Settings, WebhookSource
from zeroserve.templates.executables import TemplateRefused, check_template
from zeroserve.templates.plans import load_resource_plans

PUSH_SECRET = "whsec_" + base64.b64encode(b"push-secret-of-thirty-two-bytes!").decode()
SCENARIO = "model-serving"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    pushes = WebhookSource(kind="git", secret=SecretStr(PUSH_SECRET))
    return settings.model_copy(update={"webhooks": {"pushes": pushes}})


def serving_template(settings: Settings, name: str, *, max_replicas: str = "2", group: str | None = None) -> str:
    """The shipped sklearn template under another name, with its own maxReplicas default."""
    text = (settings.templates_dir / "sklearn.yaml").read_text()
    text = text.replace("  name: sklearn\n", f"  name: {name}\n", 1)
    text = text.replace('executables.ai.sap.com/name: "sklearn"', f'executables.ai.sap.com/name: "{name}"')
    text = text.replace('default: "2"\n        description: "Most replicas under load"',
                        f'default: "{max_replicas}"\n        description: "Most replicas under load"')
    if group:
        text = text.replace('    ai.sap.com/version: "1.0.0"\n',
                            f'    ai.sap.com/version: "1.0.0"\n    ai.sap.com/resourceGroup: "{group}"\n')
    return text


# Line 10 names a parameter nobody declared.
BROKEN = """apiVersion: ai.sap.com/v1alpha1
kind: ServingTemplate
metadata:
  name: broken
  annotations: {scenarios.ai.sap.com/name: "Model serving"}
  labels: {scenarios.ai.sap.com/id: "model-serving", ai.sap.com/version: "1.0.0"}
spec:
  template:
    spec: |
      predictor: {minReplicas: {{inputs.parameters.nope}}, model: {modelFormat: {name: sklearn}}}
"""
BROKEN_LINE = 10


class Repository:
    """A git repository in a folder, committed to as a template author commits."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True)
        self.git("init", "--quiet", "--initial-branch=main")

    def git(self, *arguments: str) -> str:
        return subprocess.run(["git", "-c", "user.name=author", "-c", "user.email=author@example.com",
                               "-C", str(self.folder), *arguments],
                              check=True, capture_output=True, text=True).stdout.strip()

    def commit(self, files: dict[str, str | None], message: str) -> str:
        for name, text in files.items():
            path = self.folder / name
            if text is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        self.git("add", "--all")
        self.git("commit", "--quiet", "-m", message)
        return self.git("rev-parse", "HEAD")


async def synced(api: httpx.AsyncClient, application: str, commit: str) -> dict[str, Any]:
    async def status() -> dict[str, Any] | None:
        response = assert_conforms(await api.get(f"/v2/admin/applications/{application}/status"))
        assert response.status_code == 200, response.text
        found = response.json()
        done = found["source"]["revision"] == commit and found["healthStatus"] != "Progressing"
        return found if done else None

    return dict(await until(status, what=f"application {application} synced at {commit[:12]}"))


async def executables(api: httpx.AsyncClient, group: str = "default") -> dict[str, dict[str, Any]]:
    response = await api.get(f"/v2/lm/scenarios/{SCENARIO}/executables", headers={"AI-Resource-Group": group})
    assert response.status_code == 200, response.text
    return {executable["id"]: executable for executable in response.json()["resources"]}


async def push(zeroserve: Node, repository: Repository) -> httpx.Response:
    """The push webhook a git host sends (GitHub's shape), signed with the source's secret."""
    body = json.dumps({"ref": "refs/heads/main", "after": repository.git("rev-parse", "HEAD"),
                       "repository": {"clone_url": str(repository.folder)}})
    webhook_id, moment = f"msg_{uuid.uuid4().hex}", datetime.fromtimestamp(int(time.time()), UTC)
    signature = Webhook(PUSH_SECRET).sign(webhook_id, moment, body)
    async with httpx.AsyncClient(base_url=zeroserve.url, timeout=30) as anyone:
        return await anyone.post("/v2/webhooks/pushes", content=body, headers={
            "webhook-id": webhook_id, "webhook-timestamp": str(int(moment.timestamp())),
            "webhook-signature": signature, "Content-Type": "application/json"})


def max_replicas(deployment: dict[str, Any]) -> int:
    return int(deployment["details"]["scaling"]["backendDetails"]["predictor"]["maxReplicas"])


async def test_templates_sync_into_their_groups_a_broken_one_with_its_line_and_pushes_refresh(
        zeroserve, api, tmp_path):
    settings = zeroserve.settings
    repository = Repository(tmp_path / "templates-repo")
    first = repository.commit({"serving/iris-small.yaml": serving_template(settings, "iris-small"),
                               "serving/team-only.yaml": serving_template(settings, "team-only", group="team-a"),
                               "serving/broken.yaml": BROKEN, "README.md": "templates"}, "first templates")

    registered = assert_conforms(await api.post("/v2/admin/repositories", json={
        "name": "templates", "url": str(repository.folder)}))
    assert registered.status_code == 200, registered.text
    created = assert_conforms(await api.post("/v2/admin/applications", json={
        "applicationName": "serving", "repositoryName": "templates", "revision": "main", "path": "serving"}))
    assert created.status_code == 200, created.text

    status = await synced(api, "serving", first)
    assert (status["syncStatus"], status["healthStatus"]) == ("OutOfSync", "Degraded")
    results = {resource["file"]: resource for resource in status["syncResourcesStatus"]}
    assert {file: r["status"] for file, r in results.items()} == {
        "serving/broken.yaml": "SyncFailed", "serving/iris-small.yaml": "Synced", "serving/team-only.yaml": "Synced"}
    refused = results["serving/broken.yaml"]
    assert refused["line"] == BROKEN_LINE
    assert refused["message"].startswith(f"serving/broken.yaml:{BROKEN_LINE}: ")
    assert "{{inputs.parameters.nope}}" in refused["message"] and "declares no 'nope'" in refused["message"]

    # Where each landed: every group, or the one its ai.sap.com/resourceGroup label names; the shipped stay.
    in_default, in_team = await executables(api), await executables(api, "team-a")
    assert {"iris-small", "sklearn"} <= set(in_default) and "team-only" not in in_default
    assert {"iris-small", "team-only", "sklearn"} <= set(in_team) and "broken" not in in_team

    # A push to the repository, signed: the application syncs the new commit, no call of the API needed.
    second = repository.commit({"serving/iris-small.yaml": serving_template(settings, "iris-small", max_replicas="5"),
                                "serving/team-only.yaml": None, "serving/broken.yaml": None}, "change and remove")
    pushed = await push(zeroserve, repository)
    assert pushed.status_code == 202, pushed.text
    assert pushed.json()["applications"] == ["serving"]
    status = await synced(api, "serving", second)
    assert (status["syncStatus"], status["healthStatus"]) == ("Synced", "Healthy")
    assert {r["file"]: r["status"] for r in status["syncResourcesStatus"]} == {
        "serving/iris-small.yaml": "Synced", "serving/team-only.yaml": "Pruned"}
    parameters = {p["name"]: p for p in (await executables(api))["iris-small"]["parameters"]}
    assert parameters["maxReplicas"]["default"] == "5"
    assert "team-only" not in await executables(api, "team-a")

    # An unsigned push does nothing.
    async with httpx.AsyncClient(base_url=zeroserve.url) as anyone:
        unsigned = await anyone.post("/v2/webhooks/pushes", json={"repository": {"clone_url": "x"}})
    assert unsigned.status_code == 401


async def test_applied_templates_are_the_groups_own_and_credentials_never_come_back(zeroserve, api, tmp_path):
    settings = zeroserve.settings
    source = tmp_path / "mine.yaml"
    source.write_text(serving_template(settings, "mine"))
    (tmp_path / "broken.yaml").write_text(BROKEN)

    def cli(*arguments: str) -> Any:
        environment = {"ZEROSERVE_DATA_DIR": str(settings.data_dir), "COLUMNS": "250", "NO_COLOR": "1"}
        return CliRunner().invoke(cli_app, list(arguments), env=environment, catch_exceptions=False)

    applied = await asyncio.to_thread(cli, "templates", "apply", "-f", str(source), "-g", "team-b")
    assert applied.exit_code == 0, applied.output
    assert "mine" in (await executables(api, "team-b")) and "mine" not in await executables(api)
    listed = await asyncio.to_thread(cli, "templates", "list", "-g", "team-b")
    assert any(line.split()[:1] == ["mine"] and "applied" in line for line in listed.output.splitlines())

    refused = await asyncio.to_thread(cli, "templates", "apply", "-f", str(tmp_path / "broken.yaml"))
    assert refused.exit_code == 2
    assert f"broken.yaml:{BROKEN_LINE}:" in refused.output and "declares no 'nope'" in refused.output
    shipped = await api.post("/v2/admin/templates", json={"template": serving_template(settings, "sklearn")})
    assert shipped.status_code == 400 and "operator's template" in shipped.json()["error"]["message"]

    # A private repository that cannot be reached: its password is in no answer and no status.
    password = "s3cr3t-pa55word"
    private = await api.post("/v2/admin/repositories", json={
        "name": "private", "url": "http://127.0.0.1:9/team/templates.git", "username": "me", "password": password})
    assert private.status_code == 200, private.text
    created = await api.post("/v2/admin/applications", json={
        "applicationName": "private-serving", "repositoryUrl": "http://127.0.0.1:9/team/templates.git",
        "revision": "main", "path": "."})
    assert created.status_code == 200, created.text

    async def failed() -> dict[str, Any] | None:
        found = (await api.get("/v2/admin/applications/private-serving/status")).json()
        return found if found["healthStatus"] == "Degraded" else None

    status = await until(failed, what="the unreachable repository's sync to fail")
    assert status["syncStatus"] == "Unknown" and "git fetch" in status["message"]
    seen = [status, assert_conforms(await api.get("/v2/admin/repositories/private")).json(),
            assert_conforms(await api.get("/v2/admin/repositories")).json(),
            assert_conforms(await api.get("/v2/admin/applications")).json()]
    assert password not in json.dumps(seen)
    # A group's token cannot manage repositories.
    team = await api.get("/v2/admin/repositories",
                         headers={"Authorization": f"Bearer {await token_for(zeroserve, ['team-b'])}"})
    assert team.status_code == 403


@pytest.mark.slow
async def test_a_synced_template_deploys_and_its_later_change_waits_for_the_deployments_update(
        zeroserve, api, tmp_path):
    settings = zeroserve.settings
    repository = Repository(tmp_path / "repo")
    first = repository.commit({"iris-small.yaml": serving_template(settings, "iris-small", max_replicas="1")},
                              "a template")
    assert (await api.post("/v2/admin/repositories", json={"url": f"file://{repository.folder}"})).status_code == 200
    created = await api.post("/v2/admin/applications", json={
        "applicationName": "iris-templates", "repositoryUrl": f"file://{repository.folder}", "revision": "HEAD",
        "path": "."})
    assert created.status_code == 200, created.text
    await synced(api, "iris-templates", first)

    model = train_iris_sklearn(settings.data_dir / "sources" / "iris")
    artifact = await api.post("/v2/lm/artifacts", json={
        "name": "iris", "kind": "model", "url": model.as_uri(), "scenarioId": SCENARIO})
    assert artifact.status_code == 201, artifact.text

    async def configuration(name: str) -> str:
        response = await api.post("/v2/lm/configurations", json={
            "name": name, "executableId": "iris-small", "scenarioId": SCENARIO,
            "inputArtifactBindings": [{"key": "model", "artifactId": artifact.json()["id"]}]})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    deployed = await api.post("/v2/lm/deployments", json={"configurationId": await configuration("iris, small")})
    assert deployed.status_code == 202, deployed.text
    id, url = deployed.json()["id"], deployed.json()["deploymentUrl"]

    async def running() -> dict[str, Any] | None:
        current = (await api.get(f"/v2/lm/deployments/{id}")).json()
        assert current["status"] in ("UNKNOWN", "PENDING", "RUNNING"), current
        return current if current["status"] == "RUNNING" else None

    serving = await until(running, what="the deployment of the synced template running")
    assert serving["executableId"] == "iris-small" and max_replicas(serving) == 1
    answer = await api.post(f"{url}/v1/models/{id}:predict", json={"instances": IRIS_ROWS}, timeout=60)
    assert answer.status_code == 200 and answer.json()["predictions"] == [1, 1]

    # The template changes in git and is synced: the deployment keeps what it was rendered with.
    second = repository.commit({"iris-small.yaml": serving_template(settings, "iris-small", max_replicas="3")},
                               "more replicas")
    refreshed = assert_conforms(await api.post("/v2/admin/applications/iris-templates/refresh"))
    assert refreshed.status_code == 202, refreshed.text
    await synced(api, "iris-templates", second)
    assert {p["name"]: p.get("default") for p in (await executables(api))["iris-small"]["parameters"]}[
        "maxReplicas"] == "3"
    unchanged = (await api.get(f"/v2/lm/deployments/{id}")).json()
    assert unchanged["status"] == "RUNNING" and max_replicas(unchanged) == 1

    # Updated (a configuration of the same executable): now rendered with the template as it is.
    updated = await api.patch(f"/v2/lm/deployments/{id}", json={"configurationId": await configuration("again")})
    assert updated.status_code == 202, updated.text

    async def rerendered() -> dict[str, Any] | None:
        current = (await api.get(f"/v2/lm/deployments/{id}")).json()
        return current if current["status"] == "RUNNING" and max_replicas(current) == 3 else None

    await until(rerendered, what="the updated deployment rendered with the changed template")


@pytest.mark.parametrize(("old", "new", "reason"), [
    ("kind: ServingTemplate", "kind: ServingTemplate: again", "is not valid YAML"),
    ("  name: iris", "  name: My_Template", "metadata.name 'My_Template' must match"),
    ("      - name: minReplicas", "      - name: min replicas", "spec.inputs.parameters.1.name: String should match"),
    ("        scaleMetric: concurrency", "        scaleMetric: concurrency\n        bogusField: 3",
     "rendered with its defaults: InferenceService spec.predictor: Additional properties are not allowed"),
], ids=["yaml", "name", "parameter", "kserve-schema"])
def test_a_refused_template_names_the_line_of_its_problem(old, new, reason):
    settings = Settings()
    text = (settings.templates_dir / "sklearn.yaml").read_text().replace("  name: sklearn\n", "  name: iris\n", 1)
    text = text.replace(old + "\n", new + "\n", 1)
    line = text.splitlines().index(new.splitlines()[-1]) + 1  # the line changed (the last one added)
    with pytest.raises(TemplateRefused) as refused:
        check_template(text, "iris.yaml", plans=load_resource_plans(settings), settings=settings)
    assert refused.value.line == line, refused.value.message
    assert refused.value.message.startswith(f"iris.yaml:{line}: {reason}"), refused.value.message
    assert "\n" not in refused.value.message
