"""What docs/models.md ("What each parameter does, here and on a cluster"), docs/cluster.md and
``GET /v2/lm/meta`` promise about what works where, checked against the running platform: bulk
updates that meta announces, ``pvc://`` taken on a cluster and refused here, ``ai://`` refused on a
cluster when the deployment is asked for (not later, in KServe), and a canary share that says it does
nothing on this machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import token_for, until
from models import train_iris_sklearn
from spec import assert_conforms

from zeroserve.node import Node
from zeroserve.settings import Settings

DEFAULT = {"AI-Resource-Group": "default"}


async def artifact(api: httpx.AsyncClient, url: str) -> httpx.Response:
    return await api.post("/v2/lm/artifacts", headers=DEFAULT, json={
        "name": "iris", "kind": "model", "url": url, "scenarioId": "model-serving"})


async def configuration(api: httpx.AsyncClient, artifact_id: str, **parameters: str) -> str:
    created = await api.post("/v2/lm/configurations", headers=DEFAULT, json={
        "name": "iris", "scenarioId": "model-serving", "executableId": "sklearn",
        "parameterBindings": [{"key": k, "value": v} for k, v in parameters.items()],
        "inputArtifactBindings": [{"key": "model", "artifactId": artifact_id}]})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def test_meta_announces_the_bulk_updates_of_deployments_that_work(api: httpx.AsyncClient) -> None:
    meta = assert_conforms(await api.get("/v2/lm/meta")).json()
    assert meta["aiApi"]["capabilities"]["bulkUpdates"] == {"executions": False, "deployments": True}
    assert meta["aiApi"]["limits"]["timeToLiveDeployments"]["minimum"] == "0m"
    bulk = await api.patch("/v2/lm/deployments", headers=DEFAULT,
                           json={"deployments": [{"id": "dnothere0000000", "targetStatus": "STOPPED"}]})
    assert bulk.status_code == 202, bulk.text
    assert bulk.json()["deployments"][0]["error"]["code"] == "NotFound"


async def test_a_pvc_artifact_is_refused_here_naming_the_setting_of_a_cluster(api: httpx.AsyncClient) -> None:
    refused = await artifact(api, "pvc://models/iris")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "InvalidArtifactUri"
    assert "ZEROSERVE_BACKEND=kserve" in refused.json()["error"]["message"]


async def test_a_canary_share_says_in_the_log_that_it_does_nothing_on_this_machine(
    api: httpx.AsyncClient, zeroserve: Node,
) -> None:
    model = train_iris_sklearn(zeroserve.settings.data_dir / "iris")
    registered = await artifact(api, model.as_uri())
    assert registered.status_code == 201, registered.text
    configured = await configuration(api, registered.json()["id"], canaryTrafficPercent="20")
    deployment = (await api.post("/v2/lm/deployments", headers=DEFAULT, json={"configurationId": configured})).json()

    async def said() -> bool:
        logs = (await api.get(f"/v2/lm/deployments/{deployment['id']}/logs", headers=DEFAULT)).json()
        return any("canaryTrafficPercent 20 applies on a cluster only" in line["msg"]
                   for line in logs["data"]["result"])

    await until(said, what="the canary line in the deployment's log")


@pytest.fixture
async def on_a_cluster(settings: Settings, cluster: Any, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings.model_copy(update=dict(
        backend="kserve", kubeconfig=cluster.kubeconfig(tmp_path / "kubeconfig"), lease_namespace="zeroserve",
        pod_name="watcher-0"))
    async with Node(settings) as zeroserve:
        token = await token_for(zeroserve, ["*"])
        async with httpx.AsyncClient(base_url=zeroserve.url, headers={"Authorization": f"Bearer {token}"},
                                     timeout=30) as http:
            yield http


async def test_on_a_cluster_pvc_is_taken_and_an_ai_artifact_is_refused_when_it_is_deployed(
    on_a_cluster: httpx.AsyncClient,
) -> None:
    api = on_a_cluster
    assert (await artifact(api, "pvc://models/iris")).status_code == 201
    secret = await api.post("/v2/admin/objectStoreSecrets", headers=DEFAULT, json={
        "name": "models", "type": "S3", "bucket": "ml-models", "endpoint": "s3.example.org", "region": "eu-1",
        "data": {"AWS_ACCESS_KEY_ID": "AKIAZEROSERVETEST01", "AWS_SECRET_ACCESS_KEY": "a-secret-key-0123456789"}})
    assert secret.status_code == 202, secret.text
    registered = await artifact(api, "ai://models/iris")
    assert registered.status_code == 201, registered.text  # registering is SAP's habit; deploying is the problem
    configured = await configuration(api, registered.json()["id"])

    refused = await api.post("/v2/lm/deployments", headers=DEFAULT, json={"configurationId": configured})
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "InvalidArtifactUri"
    assert "object store secret" in error["message"] and "pvc://" in error["message"]
    assert (await api.get("/v2/lm/deployments", headers=DEFAULT)).json()["count"] == 0
