"""A deployment's whole life through the AI API alone, as an AI Core client lives it: register a
model, configure it, deploy it, infer, switch it to another configuration under the same URL,
stop it and delete it, with every answer of a spec'd operation checked against SAP's spec."""

from __future__ import annotations

import httpx
import pytest
from conftest import until
from models import IRIS_ROWS, train_iris_sklearn
from spec import assert_conforms

pytestmark = pytest.mark.slow


async def configure(api: httpx.AsyncClient, name: str, artifact_id: str, max_replicas: str) -> str:
    response = assert_conforms(await api.post("/v2/lm/configurations", json={
        "name": name, "executableId": "sklearn", "scenarioId": "model-serving",
        "parameterBindings": [{"key": "minReplicas", "value": "0"}, {"key": "maxReplicas", "value": max_replicas}],
        "inputArtifactBindings": [{"key": "model", "artifactId": artifact_id}],
    }))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_a_model_is_registered_deployed_served_updated_in_place_stopped_and_deleted(zeroserve, api):
    model_dir = train_iris_sklearn(zeroserve.settings.data_dir / "sources" / "iris")
    artifact = assert_conforms(await api.post("/v2/lm/artifacts", json={
        "name": "iris", "kind": "model", "url": model_dir.as_uri(), "scenarioId": "model-serving",
    }))
    assert artifact.status_code == 201, artifact.text
    artifact_id = artifact.json()["id"]
    first = await configure(api, "iris, two replicas at most", artifact_id, "2")
    second = await configure(api, "iris, three replicas at most", artifact_id, "3")

    created = assert_conforms(await api.post("/v2/lm/deployments", json={"configurationId": first}))
    assert created.status_code == 202, created.text
    id, url = created.json()["id"], created.json()["deploymentUrl"]

    async def deployment() -> dict:
        response = assert_conforms(await api.get(f"/v2/lm/deployments/{id}"))
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def running() -> dict | None:
        current = await deployment()
        assert current["status"] in ("UNKNOWN", "PENDING", "RUNNING"), current
        return current if current["status"] == "RUNNING" else None

    serving = await until(running, what="the deployment running")
    assert serving["deploymentUrl"] == url
    assert serving["configurationId"] == first
    assert serving["configurationName"] == "iris, two replicas at most"

    async def predict() -> httpx.Response:
        return await api.post(f"{url}/v1/models/{id}:predict", json={"instances": IRIS_ROWS}, timeout=60)

    cold = await predict()
    assert cold.status_code == 200, cold.text
    assert cold.json()["predictions"] == [1, 1]

    switched = assert_conforms(await api.patch(f"/v2/lm/deployments/{id}", json={"configurationId": second}))
    assert switched.status_code == 202, switched.text
    answers: list[int] = []

    async def updated() -> dict | None:
        # The old version answers until the new one is ready: every request meanwhile succeeds.
        answers.append((await predict()).status_code)
        current = await deployment()
        return current if current["configurationId"] == second and current["status"] == "RUNNING" else None

    after = await until(updated, timeout=60, what="the new configuration serving")
    assert set(answers) == {200}
    assert after["deploymentUrl"] == url
    assert after["latestRunningConfigurationId"] == first
    assert after["lastOperation"] == "UPDATE"
    assert after["details"]["scaling"]["backendDetails"]["predictor"]["maxReplicas"] == 3
    assert (await predict()).json()["predictions"] == [1, 1]

    stopping = assert_conforms(await api.patch(f"/v2/lm/deployments/{id}", json={"targetStatus": "STOPPED"}))
    assert stopping.status_code == 202, stopping.text

    async def stopped() -> dict | None:
        current = await deployment()
        return current if current["status"] == "STOPPED" else None

    await until(stopped, what="the deployment stopping")
    refused = await predict()
    assert refused.status_code == 503 and "STOPPED" in refused.json()["error"]["message"]

    deleting = assert_conforms(await api.delete(f"/v2/lm/deployments/{id}"))
    assert deleting.status_code == 202, deleting.text

    async def gone() -> bool:
        return assert_conforms(await api.get(f"/v2/lm/deployments/{id}")).status_code == 404

    await until(gone, what="the deployment being deleted")
    remaining = assert_conforms(await api.get("/v2/lm/deployments"))
    assert remaining.json() == {"count": 0, "resources": []}
