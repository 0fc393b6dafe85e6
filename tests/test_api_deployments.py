"""The deployment routes of the AI API, against a real nats-server and, where a test says so, real
model servers: create, read, list, stop, update, delete, logs and the live event stream, each
response checked against SAP's spec.

Configurations and artifacts are put in place the way the platform would hold them (a
configuration record, an artifact.created event), so these tests do not depend on the catalog
routes; tests/test_api_lifecycle.py does everything through the HTTP API alone.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from conftest import token_for, until
from models import IRIS_ROWS, train_iris_sklearn
from spec import assert_conforms

from zeroserve.core.store import Configuration
from zeroserve.events import ArtifactBinding, ArtifactCreated, ParameterBinding, new_event
from zeroserve.node import Node


async def put_configuration(
    zeroserve: Node, id: str, *, group: str = "default", executable: str = "sklearn",
    artifact: str = "iris-model", **parameters: str,
) -> Configuration:
    assert zeroserve.platform is not None
    configuration = Configuration(
        id=id, group=group, name=f"{id} config", executable_id=executable, scenario_id="model-serving",
        parameter_bindings=[ParameterBinding(key=k, value=v) for k, v in parameters.items()],
        input_artifact_bindings=[ArtifactBinding(key="model", artifact_id=artifact)],
    )
    await zeroserve.platform.store.configurations.put(group, id, configuration)
    return configuration


async def put_iris_artifact(zeroserve: Node, group: str = "default", id: str = "iris-model") -> None:
    """A trained iris model, registered and staged the way artifact.created does it."""
    assert zeroserve.platform is not None
    model_dir = train_iris_sklearn(zeroserve.settings.data_dir / "sources" / "iris")
    await zeroserve.platform.bus.publish(
        new_event(ArtifactCreated(id=id, name="iris", url=model_dir.as_uri()), source="/tests"), group)
    await until(lambda: artifact_staged(zeroserve, group, id))


async def artifact_staged(zeroserve: Node, group: str, id: str) -> bool:
    assert zeroserve.platform is not None
    artifact = await zeroserve.platform.store.artifacts.get(group, id)
    return artifact is not None and artifact.status == "staged"


async def status_becomes(api: httpx.AsyncClient, id: str, status: str, group: str = "default",
                         timeout: float = 30) -> dict[str, Any]:
    async def seen() -> dict[str, Any] | None:
        response = await api.get(f"/v2/lm/deployments/{id}", headers={"AI-Resource-Group": group})
        assert response.status_code == 200, response.text
        body = response.json()
        return body if body["status"] == status else None

    return await until(seen, timeout, f"deployment {id} becoming {status}")


async def create(api: httpx.AsyncClient, configuration: str, group: str = "default", **extra: Any) -> dict:
    response = assert_conforms(await api.post("/v2/lm/deployments", json={"configurationId": configuration, **extra},
                                              headers={"AI-Resource-Group": group}))
    assert response.status_code == 202, response.text
    return response.json()


@pytest.fixture
async def iris(zeroserve: Node) -> Configuration:
    await put_iris_artifact(zeroserve)
    return await put_configuration(zeroserve, "iris-config", minReplicas="0", maxReplicas="2")


async def test_a_created_deployment_is_found_at_once_and_runs_with_its_details(zeroserve, api, iris):
    response = assert_conforms(await api.post("/v2/lm/deployments",
                                              json={"configurationId": "iris-config", "ttl": "2H"}))
    assert response.status_code == 202
    created = response.json()
    id = created["id"]
    assert created["status"] == "UNKNOWN"
    assert created["ttl"] == "2h"
    assert created["deploymentUrl"] == f"{zeroserve.url}/v2/inference/deployments/{id}"
    assert response.headers["Location"] == f"{zeroserve.url}/v2/lm/deployments/{id}"

    at_once = assert_conforms(await api.get(f"/v2/lm/deployments/{id}"))
    assert at_once.status_code == 200, at_once.text
    assert at_once.json()["configurationId"] == "iris-config"
    assert at_once.json()["lastOperation"] == "CREATE"

    await status_becomes(api, id, "RUNNING")
    running = assert_conforms(await api.get(f"/v2/lm/deployments/{id}")).json()
    assert running["configurationName"] == "iris-config config"
    assert running["executableId"] == "sklearn"
    assert running["scenarioId"] == "model-serving"
    assert running["targetStatus"] == "RUNNING"
    assert running["deploymentUrl"] == created["deploymentUrl"]
    assert running["ttl"] == "2h"
    assert running["details"] == {
        "scaling": {"backendDetails": {"predictor": {"minReplicas": 0, "maxReplicas": 2, "runningReplicas": 0}}},
        "resources": {"backendDetails": {"predictor": {"resourcePlan": "starter"}}},
    }
    assert running["submissionTime"] <= running["startTime"]
    assert "completionTime" not in running


@pytest.mark.parametrize(("body", "code", "words"), [
    ({"configurationId": "no-such-config"}, "ConfigurationNotFound", "no configuration no-such-config"),
    ({"configurationId": "no-template"}, "ExecutableNotFound", "'tensorflow'"),
    ({"configurationId": "iris-config", "ttl": "2 weeks"}, "BadRequest", "ttl"),
    ({"ttl": "2h"}, "BadRequest", "configurationId"),
    ({"configurationId": "raw-mode"}, "InvalidConfiguration", "'Raw' is not a KServe deployment mode; use Knative"),
    ({"configurationId": "standard-at-zero"}, "InvalidConfiguration", "scales to zero only through KEDA"),
])
async def test_a_deployment_that_cannot_be_made_is_refused_with_400_saying_why(zeroserve, api, iris, body, code,
                                                                                 words):
    await put_configuration(zeroserve, "no-template", executable="tensorflow")
    # Stored as they would have been before the deployment mode was checked, or under other settings.
    await put_configuration(zeroserve, "raw-mode", deploymentMode="Raw")
    await put_configuration(zeroserve, "standard-at-zero", deploymentMode="Standard")
    response = assert_conforms(await api.post("/v2/lm/deployments", json=body))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert words in response.json()["error"]["message"]
    assert assert_conforms(await api.get("/v2/lm/deployments/$count")).text == "0"


async def test_forbidden_moves_answer_412_naming_the_status_and_what_is_allowed(zeroserve, api, iris):
    id = (await create(api, "iris-config"))["id"]
    await status_becomes(api, id, "RUNNING")

    deleting = assert_conforms(await api.delete(f"/v2/lm/deployments/{id}"))
    assert deleting.status_code == 412
    assert "is RUNNING" in deleting.json()["error"]["message"]
    assert "stop it first" in deleting.json()["error"]["message"]

    both = assert_conforms(await api.patch(f"/v2/lm/deployments/{id}",
                                           json={"targetStatus": "STOPPED", "configurationId": "iris-config"}))
    assert both.status_code == 400
    wrong = assert_conforms(await api.patch(f"/v2/lm/deployments/{id}", json={"targetStatus": "RUNNING"}))
    assert wrong.status_code == 400 and "targetStatus" in wrong.json()["error"]["message"]

    stopping = assert_conforms(await api.patch(f"/v2/lm/deployments/{id}", json={"targetStatus": "STOPPED"}))
    assert stopping.status_code == 202
    assert stopping.json() == {"id": id, "message": "Deployment modification scheduled"}
    stopped = await status_becomes(api, id, "STOPPED")
    assert stopped["targetStatus"] == "STOPPED"
    assert stopped["lastOperation"] == "UPDATE"
    assert "completionTime" in stopped

    again = assert_conforms(await api.patch(f"/v2/lm/deployments/{id}", json={"targetStatus": "STOPPED"}))
    assert again.status_code == 412
    assert "is STOPPED" in again.json()["error"]["message"] and "can be deleted" in again.json()["error"]["message"]
    reconfigured = assert_conforms(await api.patch(f"/v2/lm/deployments/{id}", json={"configurationId": "iris-config"}))
    assert reconfigured.status_code == 412
    assert "is STOPPED" in reconfigured.json()["error"]["message"]
    assert "RUNNING or PENDING" in reconfigured.json()["error"]["message"]

    deleted = assert_conforms(await api.delete(f"/v2/lm/deployments/{id}"))
    assert deleted.status_code == 202
    assert deleted.json() == {"id": id, "message": "Deployment deletion scheduled"}

    async def gone() -> bool:
        return (await api.get(f"/v2/lm/deployments/{id}")).status_code == 404

    await until(gone, what="the deleted deployment disappearing")
    missing = assert_conforms(await api.get(f"/v2/lm/deployments/{id}"))
    assert missing.json()["error"]["code"] == "NotFound"
    assert assert_conforms(await api.delete(f"/v2/lm/deployments/{id}")).status_code == 404


async def test_an_unknown_deployment_deleted_before_it_is_picked_up_stays_deleted(zeroserve, api, iris):
    id = (await create(api, "iris-config"))["id"]
    response = await api.delete(f"/v2/lm/deployments/{id}")
    # The request may have been picked up already: then it is PENDING or RUNNING and the delete waits for a stop.
    if response.status_code == 412:
        pytest.skip("the deployment left UNKNOWN before the delete arrived")
    assert response.status_code == 202

    async def gone() -> bool:
        return (await api.get(f"/v2/lm/deployments/{id}")).status_code == 404

    await until(gone)
    # Both events handled (whichever came first), and still gone.
    assert zeroserve.platform is not None
    await until(lambda: consumers_idle(zeroserve), what="the functions having handled every event")
    assert (await api.get(f"/v2/lm/deployments/{id}")).status_code == 404


async def consumers_idle(zeroserve: Node) -> bool:
    assert zeroserve.platform is not None
    js = zeroserve.platform.bus.js
    for name in ("deployment_requested", "deployment_deleted"):
        info = await js.consumer_info("ZEROSERVE_EVENTS", name)
        if info.num_pending or info.num_ack_pending:
            return False
    return True


async def test_the_list_filters_pages_selects_and_counts(zeroserve, api, iris):
    await put_configuration(zeroserve, "missing-model", artifact="no-such-artifact")
    await put_configuration(zeroserve, "onnx-config", executable="onnx", artifact="no-such-artifact")
    iris_ids = [(await create(api, "iris-config"))["id"] for _ in range(3)]
    dead_id = (await create(api, "missing-model"))["id"]
    onnx_id = (await create(api, "onnx-config"))["id"]
    dead = await status_becomes(api, dead_id, "DEAD")
    assert dead["statusDetails"]["reason"] == "ArtifactNotFound"
    assert "no-such-artifact" in dead["statusMessage"]

    async def listed(**params: Any) -> dict:
        response = assert_conforms(await api.get("/v2/lm/deployments", params=params))
        assert response.status_code == 200, response.text
        return response.json()

    everything = await listed()
    assert everything["count"] == 5
    assert {d["id"] for d in everything["resources"]} == {*iris_ids, dead_id, onnx_id}
    assert {d["id"] for d in (await listed(configurationId="iris-config"))["resources"]} == set(iris_ids)
    assert {d["id"] for d in (await listed(executableIds="onnx"))["resources"]} == {onnx_id}
    assert (await listed(executableIds="onnx,sklearn"))["count"] == 5
    assert (await listed(scenarioId="model-serving"))["count"] == 5
    assert (await listed(scenarioId="another-scenario"))["count"] == 0
    assert {d["id"] for d in (await listed(status="DEAD"))["resources"]} >= {dead_id}

    first, second = await listed(**{"$top": 2}), await listed(**{"$top": 2, "$skip": 2})
    rest = await listed(**{"$skip": 4})
    assert (first["count"], second["count"], rest["count"]) == (5, 5, 5), (first, second, rest)
    pages = [d["id"] for page in (first, second, rest) for d in page["resources"]]
    assert pages == [d["id"] for d in everything["resources"]]

    selected = await listed(**{"$select": "status"})
    assert set(selected["resources"][0]) == {"id", "configurationId", "status", "createdAt", "modifiedAt"}
    one = assert_conforms(await api.get(f"/v2/lm/deployments/{dead_id}", params={"$select": "status"})).json()
    assert one["status"] == "DEAD" and "details" not in one

    # Not checked with assert_conforms: openapi-core reads a text/plain body as a string, never as
    # the integer the spec declares, so it refuses every count.
    count = assert_conforms(await api.get("/v2/lm/deployments/$count", params={"configurationId": "iris-config"}))
    assert count.status_code == 200 and count.headers["content-type"].startswith("text/plain")
    assert count.text == "3"
    assert assert_conforms(await api.get("/v2/lm/deployments/$count", params={"status": "DEAD"})).text in ("1", "2")
    bad = assert_conforms(await api.get("/v2/lm/deployments", params={"status": "ASLEEP"}))
    assert bad.status_code == 400


async def test_a_group_sees_and_touches_only_its_own_deployments(zeroserve, api, iris):
    await put_iris_artifact(zeroserve, group="team-a")
    await put_configuration(zeroserve, "iris-config", group="team-a")
    ours = (await create(api, "iris-config", group="team-a"))["id"]
    theirs = (await create(api, "iris-config"))["id"]
    token = await token_for(zeroserve, ["team-a"])
    async with httpx.AsyncClient(base_url=zeroserve.url, timeout=30, headers={
            "Authorization": f"Bearer {token}", "AI-Resource-Group": "team-a"}) as team_a:
        listed = assert_conforms(await team_a.get("/v2/lm/deployments")).json()
        assert [d["id"] for d in listed["resources"]] == [ours]
        assert (await team_a.get(f"/v2/lm/deployments/{theirs}")).status_code == 404
        assert (await team_a.patch(f"/v2/lm/deployments/{theirs}", json={"targetStatus": "STOPPED"})).status_code \
            == 404
        assert (await team_a.delete(f"/v2/lm/deployments/{theirs}")).status_code == 404
        assert (await team_a.get(f"/v2/lm/deployments/{theirs}/logs")).status_code == 404
        assert (await team_a.get(f"/v2/lm/deployments/{theirs}/events")).status_code == 404
        # A group the token does not cover does not exist for it.
        other = await team_a.get(f"/v2/lm/deployments/{theirs}", headers={"AI-Resource-Group": "default"})
        assert other.status_code == 404
        assert (await team_a.get("/v2/lm/deployments", headers={"AI-Resource-Group": "default"})).status_code == 404
    assert assert_conforms(await api.get("/v2/lm/deployments/$count")).text == "1"


async def test_a_bulk_change_answers_for_each_deployment(zeroserve, api, iris):
    running = (await create(api, "iris-config"))["id"]
    await status_becomes(api, running, "RUNNING")
    response = assert_conforms(await api.patch(
        "/v2/lm/deployments", headers={"Content-Type": "application/merge-patch+json"},
        content=json.dumps({"deployments": [
            {"id": running, "targetStatus": "STOPPED"},
            {"id": "dnosuchdeploymen", "targetStatus": "DELETED"},
            {"id": running, "targetStatus": "DELETED"},
        ]})))
    assert response.status_code == 202, response.text
    first, second, again = response.json()["deployments"]
    assert first == {"id": running, "message": "Deployment modification scheduled"}
    assert second["id"] == "dnosuchdeploymen" and second["error"]["code"] == "NotFound"
    assert again["id"] == running and again["error"]["code"] == "Duplicate", "an id's first change only"
    await status_becomes(api, running, "STOPPED")
    assert (await api.get(f"/v2/lm/deployments/{running}")).status_code == 200, "stopped, not deleted"
    empty = assert_conforms(await api.patch("/v2/lm/deployments", headers={
        "Content-Type": "application/merge-patch+json"}, content=json.dumps({"deployments": []})))
    assert empty.status_code == 400


@pytest.mark.slow
async def test_logs_are_read_after_the_replicas_are_gone(zeroserve, api, iris):
    id = (await create(api, "iris-config"))["id"]
    running = await status_becomes(api, id, "RUNNING")
    predicted = await api.post(f"{running['deploymentUrl']}/v1/models/{id}:predict", json={"instances": IRIS_ROWS},
                               timeout=60)
    assert predicted.status_code == 200, predicted.text
    assert (await api.patch(f"/v2/lm/deployments/{id}", json={"targetStatus": "STOPPED"})).status_code == 202
    await status_becomes(api, id, "STOPPED")

    async def logged() -> dict | None:
        response = assert_conforms(await api.get(f"/v2/lm/deployments/{id}/logs"))
        assert response.status_code == 200, response.text
        lines = response.json()["data"]["result"]
        return response.json() if any("stopped" in line["msg"] for line in lines) else None

    logs = (await until(logged, what="the stop reaching the logs"))["data"]["result"]
    assert any(line["source"].startswith("replica-") for line in logs), "the model server's own lines are kept"
    assert any(f"serving sklearn at {running['deploymentUrl']}" in line["msg"] for line in logs)
    stamps = [line["timestamp"] for line in logs]
    assert stamps == sorted(stamps)

    newest = assert_conforms(await api.get(f"/v2/lm/deployments/{id}/logs", params={"$top": 2, "$order": "desc"}))
    assert [line["msg"] for line in newest.json()["data"]["result"]] == [line["msg"] for line in logs[::-1][:2]]
    oldest = assert_conforms(await api.get(f"/v2/lm/deployments/{id}/logs", params={"$top": 1}))
    assert oldest.json()["data"]["result"] == logs[:1]
    future = datetime.now(UTC) + timedelta(hours=1)
    later = assert_conforms(await api.get(f"/v2/lm/deployments/{id}/logs", params={"start": future.isoformat()}))
    assert later.status_code == 200, "start after the default end (now): a range that holds nothing"
    assert later.json() == {"data": {"result": []}}
    window = assert_conforms(await api.get(f"/v2/lm/deployments/{id}/logs", params={
        "start": (future - timedelta(minutes=30)).isoformat(), "end": future.isoformat()}))
    assert window.json() == {"data": {"result": []}}

    assert (await api.delete(f"/v2/lm/deployments/{id}")).status_code == 202

    async def deleted() -> bool:
        return (await api.get(f"/v2/lm/deployments/{id}")).status_code == 404

    await until(deleted)
    after = assert_conforms(await api.get(f"/v2/lm/deployments/{id}/logs"))
    assert after.status_code == 200, "logs outlive the deployment record"
    assert any(line["msg"] == "deleted" for line in after.json()["data"]["result"])
    unknown = assert_conforms(await api.get("/v2/lm/deployments/dneverexisted00/logs"))
    assert unknown.status_code == 404


async def read_events(lines: AsyncIterator[str], count: int, timeout: float = 30) -> list[dict[str, Any]]:
    """The next ``count`` server-sent events (event, id, data) from a stream's lines."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}

    async def collect() -> None:
        async for line in lines:
            if not line:
                if "data" in current:
                    events.append(dict(current))
                current.clear()
                if len(events) >= count:
                    return
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                current[name] = json.loads(value.strip()) if name == "data" else value.strip()

    await asyncio.wait_for(collect(), timeout)
    return events


async def test_the_event_stream_delivers_status_changes_until_the_deployment_is_deleted(zeroserve, api, iris):
    id = (await create(api, "iris-config"))["id"]
    await status_becomes(api, id, "RUNNING")
    assert zeroserve.platform is not None
    subscriptions = len(zeroserve.platform.bus.nc._subs)

    async with api.stream("GET", f"/v2/lm/deployments/{id}/events") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.aiter_lines()
        (now,) = await read_events(lines, 1)
        assert now["event"] == "io.zeroserve.deployment.status" and now["data"]["status"] == "RUNNING"
        assert len(zeroserve.platform.bus.nc._subs) == subscriptions + 2
        assert (await api.patch(f"/v2/lm/deployments/{id}", json={"targetStatus": "STOPPED"})).status_code == 202
        seen: list[dict[str, Any]] = []
        while not any(e["data"].get("status") == "STOPPED" for e in seen):
            seen += await read_events(lines, 1)
        statuses = [e["data"]["status"] for e in seen if e["event"] == "io.zeroserve.deployment.status"]
        assert statuses[-2:] == ["STOPPING", "STOPPED"]
        assert all(e["id"] for e in seen), "every event carries its CloudEvent id"
        assert all(e["data"]["id"] == id for e in seen)

        assert (await api.delete(f"/v2/lm/deployments/{id}")).status_code == 202
        async for line in lines:  # the stream ends by itself once the deployment is deleted
            if line.startswith("data:"):
                seen.append(json.loads(line[5:]))
        assert seen[-1].get("targetStatus") == "DELETED"

    async def released() -> bool:
        return len(zeroserve.platform.bus.nc._subs) == subscriptions

    await until(released, what="the stream's subscriptions being released")


async def test_a_client_that_leaves_the_event_stream_leaves_no_subscription_behind(zeroserve, api, iris):
    id = (await create(api, "iris-config"))["id"]
    assert zeroserve.platform is not None
    subscriptions = len(zeroserve.platform.bus.nc._subs)
    async with api.stream("GET", f"/v2/lm/deployments/{id}/events") as stream:
        (first,) = await read_events(stream.aiter_lines(), 1)
        assert first["data"]["id"] == id
        assert len(zeroserve.platform.bus.nc._subs) == subscriptions + 2

    async def released() -> bool:
        return len(zeroserve.platform.bus.nc._subs) == subscriptions

    await until(released, what="the stream's subscriptions being released")
    missing = await api.get("/v2/lm/deployments/dneverexisted00/events")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NotFound"

