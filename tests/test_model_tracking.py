"""What the console shows of a model: its metrics, tags and custom info as SAP's ``PATCH /v2/lm/metrics``
writes them (through HTTP, the typed client and SAP's own SDK), and its origin: the API call, event or
webhook that registered it, with the run and parameters that produced it."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from conftest import token_for
from pydantic import SecretStr
from spec import assert_conforms
from test_api_catalog import DEFAULT, register
from test_webhooks_in import CI_SECRET, send

from zeroserve.client import Client
from zeroserve.events import ArtifactCreated, new_event
from zeroserve.settings import Settings, WebhookSource

PATCH = {**DEFAULT, "Content-Type": "application/merge-patch+json"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhooks": {
        "ci": WebhookSource(kind="generic", secret=SecretStr(CI_SECRET), event_type="io.zeroserve.artifact.created"),
    }})


@pytest.fixture
def model_url(zeroserve) -> str:
    """A file:// URL inside the allowed roots: registering checks the URL, not what is there."""
    return (zeroserve.settings.data_dir / "models-src" / "iris").resolve().as_uri()


async def metrics_of(api: httpx.AsyncClient, artifact_id: str) -> dict[str, Any]:
    response = assert_conforms(await api.get("/v2/lm/metrics", params={"executionIds": artifact_id}, headers=DEFAULT))
    (resource,) = response.json()["resources"]
    return dict(resource)


def figures(resource: dict[str, Any]) -> set[tuple[Any, ...]]:
    return {(m["name"], m["value"], m.get("step"), m["timestamp"]) for m in resource["metrics"]}


async def test_patched_metrics_merge_by_name_step_and_time_and_read_back_with_tags_and_custom_info(api, model_url):
    artifact_id = await register(api, model_url, labels=[{"key": "ext.ai.sap.com/team", "value": "a"}])
    first = {"executionId": artifact_id,
             "metrics": [{"name": "accuracy", "value": 0.9, "step": 1, "timestamp": "2026-12-01T10:00:00Z"},
                         {"name": "loss", "value": 0.3, "step": 1, "timestamp": "2026-12-01T10:00:00Z",
                          "labels": [{"name": "split", "value": "test"}]}],
             "tags": [{"name": "framework", "value": "sklearn"}],
             "customInfo": [{"name": "confusion", "value": "[[50, 0], [2, 48]]"}]}
    written = assert_conforms(await api.patch("/v2/lm/metrics", json=first, headers=PATCH))
    assert written.status_code == 204 and written.content == b""
    again = {"executionId": artifact_id,
             "metrics": [{"name": "accuracy", "value": 0.95, "step": 1, "timestamp": "2026-12-01T11:00:00+01:00"},
                         {"name": "accuracy", "value": 0.97, "step": 2, "timestamp": "2026-12-01T10:05:00Z"}],
             "tags": [{"name": "framework", "value": "scikit-learn"}, {"name": "owner", "value": "ml-team"}]}
    assert (await api.patch("/v2/lm/metrics", json=again, headers=PATCH)).status_code == 204

    resource = await metrics_of(api, artifact_id)
    assert figures(resource) == {("accuracy", 0.95, 1, "2026-12-01T10:00:00Z"),  # the same step and time: replaced
                                 ("loss", 0.3, 1, "2026-12-01T10:00:00Z"),
                                 ("accuracy", 0.97, 2, "2026-12-01T10:05:00Z")}
    loss = next(m for m in resource["metrics"] if m["name"] == "loss")
    assert {"name": "split", "value": "test"} in loss["labels"]
    assert {"name": "metrics.ai.sap.com/Artifact.name", "value": "iris"} in loss["labels"]
    assert {(t["name"], t["value"]) for t in resource["tags"]} == {
        ("ext.ai.sap.com/team", "a"), ("framework", "scikit-learn"), ("owner", "ml-team")}
    assert resource["customInfo"] == [{"name": "confusion", "value": "[[50, 0], [2, 48]]"}]
    tagged = await api.get("/v2/lm/metrics", params={"tagFilters": "owner=ml-team"}, headers=DEFAULT)
    assert [r["executionId"] for r in tagged.json()["resources"]] == [artifact_id]


    # Without a time, a metric is taken when it was written (SAP's SDK sends plain JSON).
    undated = {"executionId": artifact_id, "metrics": [{"name": "f1", "value": 0.8}]}
    assert (await api.patch("/v2/lm/metrics", json=undated, headers=DEFAULT)).status_code == 204
    resource = await metrics_of(api, artifact_id)
    (f1,) = [m for m in resource["metrics"] if m["name"] == "f1"]
    assert "step" not in f1 and f1["timestamp"] >= resource["createdAt"]


REFUSED = [
    ({"metrics": [{"name": "accuracy", "value": "high"}]}, "metrics.0.value"),
    ({"metrics": [{"name": "accuracy", "value": 1, "step": -1}]}, "metrics.0.step"),
    ({"metrics": [{"name": "accuracy", "value": 1, "timestamp": "yesterday"}]}, "metrics.0.timestamp"),
    ({"tags": [{"name": "owner", "value": "x" * 257}]}, "tags.0.value"),
    ({"customInfo": [{"name": "empty", "value": ""}]}, "customInfo.0.value"),
    ({"executionId": "no"}, "executionId"),
    ({"unknown": 1}, "unknown"),
]


async def test_a_metrics_write_sap_would_refuse_gets_400_naming_the_field(api, model_url):
    artifact_id = await register(api, model_url)
    for change, field in REFUSED:
        response = await api.patch("/v2/lm/metrics", json={"executionId": artifact_id, **change}, headers=PATCH)
        assert response.status_code == 400, (change, response.text)
        assert field in response.json()["error"]["message"], (change, response.text)
    assert (await metrics_of(api, artifact_id))["metrics"] == []


async def test_metrics_of_an_artifact_not_in_the_callers_group_cannot_be_written(api, zeroserve, model_url):
    artifact_id = await register(api, model_url)
    body = {"executionId": artifact_id, "metrics": [{"name": "accuracy", "value": 0.1}]}
    token = await token_for(zeroserve, ["team-a"])
    async with httpx.AsyncClient(base_url=zeroserve.url, headers={"Authorization": f"Bearer {token}"}) as team_a:
        other = await team_a.patch("/v2/lm/metrics", json=body, headers={"AI-Resource-Group": "team-a"})
    assert other.status_code == 404 and artifact_id in other.json()["error"]["message"]
    missing = await api.patch("/v2/lm/metrics", json={**body, "executionId": "not-an-artifact"}, headers=PATCH)
    assert missing.status_code == 404
    assert (await metrics_of(api, artifact_id))["metrics"] == []


async def test_the_typed_client_and_sap_sdk_write_metrics_the_console_reads(zeroserve, model_url):
    from ai_api_client_sdk.models.metric import Metric as SdkMetric
    from ai_core_sdk.ai_core_v2_client import AICoreV2Client
    from ai_core_sdk.models import MetricTag

    identity, secret = await zeroserve.platform.auth.create_client(["default"])

    def session() -> None:
        with Client.local(zeroserve.settings) as client:
            artifact = client.create_artifact("iris", model_url)
            client.modify_metrics(artifact.id, metrics=[{"name": "accuracy", "value": 0.91, "step": 3}],
                                  tags={"owner": "ml-team"}, custom_info={"notes": "first try"})
            ai = AICoreV2Client(base_url=f"{zeroserve.url}/v2", auth_url=f"{zeroserve.url}/oauth/token",
                                client_id=identity.id, client_secret=secret, resource_group="default")
            ai.metrics.modify(execution_id=artifact.id, tags=[MetricTag(name="stage", value="prod")], metrics=[
                SdkMetric(name="recall", value=0.88, timestamp=None, step=3)])
            sdk_read = ai.metrics.query(execution_ids=[artifact.id]).resources[0]
            (found,) = client.metrics([artifact.id])
        assert {(m.name, m.value, m.step) for m in found.metrics} == {("accuracy", 0.91, 3), ("recall", 0.88, 3)}
        assert {(t.name, t.value) for t in found.tags} == {("owner", "ml-team"), ("stage", "prod")}
        assert found.custom_info == [{"name": "notes", "value": "first try"}]
        assert {m.name for m in sdk_read.metrics} == {"accuracy", "recall"}

    await asyncio.to_thread(session)


# -- where a model came from -------------------------------------------------------------------------


async def test_an_artifact_says_whether_the_api_an_event_or_a_webhook_registered_it(api, zeroserve, listen, model_url):
    statuses = await listen(zeroserve, "zeroserve.default.artifact.status")
    by_api = await register(api, model_url)
    origin = (await api.get(f"/v2/lm/artifacts/{by_api}", headers=DEFAULT)).json()["origin"]
    assert origin["via"] == "api" and origin["source"] == "/v2/lm/artifacts" and origin["eventId"]

    trained = ArtifactCreated(id="iris-run-7", name="iris", url=model_url, run="run-7",
                              parameters={"max_depth": 3, "criterion": "gini"})
    event = new_event(trained, source="/ci/pipelines/train", subject="iris-run-7")
    await zeroserve.platform.bus.publish(event, "default")
    await statuses.wait_for(lambda e: e["id"] == "iris-run-7")
    by_event = assert_conforms(await api.get("/v2/lm/artifacts/iris-run-7", headers=DEFAULT)).json()
    assert by_event["origin"] == {"via": "event", "source": "/ci/pipelines/train", "eventId": event["id"],
                                  "subject": "iris-run-7", "run": "run-7",
                                  "parameters": {"max_depth": 3, "criterion": "gini"}}

    async with httpx.AsyncClient(base_url=zeroserve.url) as anyone:
        hooked = await send(anyone, "ci", {"id": "iris-hooked", "name": "iris", "url": model_url, "run": "build-12",
                                           "parameters": {"learning_rate": 0.1}}, CI_SECRET)
    assert hooked.status_code == 202, hooked.text
    await statuses.wait_for(lambda e: e["id"] == "iris-hooked")
    by_webhook = (await api.get("/v2/lm/artifacts/iris-hooked", headers=DEFAULT)).json()["origin"]
    assert by_webhook == {"via": "webhook", "source": "/zeroserve/webhooks/ci", "webhook": "ci",
                          "eventId": hooked.json()["events"][0]["id"], "subject": "iris-hooked", "run": "build-12",
                          "parameters": {"learning_rate": 0.1}}
