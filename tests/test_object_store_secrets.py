"""Object store secrets and the ai://<secret>/<path> artifact URLs that resolve through them.

The admin routes keep a group's secrets apart and never show their data; an artifact of a local
object store is staged from its directory (and cannot climb out of it); one of an S3 object store
is fetched from an S3 API on loopback (moto) with the secret's keys, which never reach the
process environment, an event or a response.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import token_for
from models import train_iris_sklearn
from spec import assert_conforms

from zeroserve.events import DeploymentRequested, new_event

ACCESS_KEY = "AKIAZEROSERVETEST01"
SECRET_KEY = "never-show-this-secret-key-0123456789"
DEFAULT = {"AI-Resource-Group": "default"}


def s3_secret(name: str = "models", **changes: Any) -> dict[str, Any]:
    return {"name": name, "type": "S3", "bucket": "ml-models", "endpoint": "s3.example.org", "region": "eu-1",
            "pathPrefix": "team", "verifyssl": "1", "usehttps": "1",
            "data": {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}, **changes}


def local_secret(directory: Path, name: str = "shelf") -> dict[str, Any]:
    return {"name": name, "type": "local", "pathPrefix": str(directory), "data": {}}


async def register(api: httpx.AsyncClient, url: str) -> httpx.Response:
    return assert_conforms(await api.post("/v2/lm/artifacts", headers=DEFAULT, json={
        "name": "iris", "kind": "model", "url": url, "scenarioId": "model-serving"}))


# -- the admin routes ------------------------------------------------------------------------------


async def test_an_s3_secret_is_created_read_changed_and_deleted_without_ever_showing_its_data(api):
    created = assert_conforms(await api.post("/v2/admin/objectStoreSecrets", json=s3_secret(), headers=DEFAULT))
    assert created.status_code == 202, created.text

    listed = assert_conforms(await api.get("/v2/admin/objectStoreSecrets", headers=DEFAULT))
    one = assert_conforms(await api.get("/v2/admin/objectStoreSecrets/models", headers=DEFAULT))
    assert listed.json()["count"] == 1 and listed.json()["resources"] == [one.json()]
    metadata = one.json()["metadata"]
    assert metadata["storage.ai.sap.com/bucket"] == "ml-models" and metadata["storage.ai.sap.com/type"] == "S3"
    assert metadata["serving.kubeflow.org/s3-endpoint"] == "s3.example.org"

    changed = assert_conforms(await api.patch("/v2/admin/objectStoreSecrets/models", headers=DEFAULT,
                                              json=s3_secret(bucket="ml-models-2")))
    assert changed.status_code == 202
    after = (await api.get("/v2/admin/objectStoreSecrets/models", headers=DEFAULT)).json()
    assert after["metadata"]["storage.ai.sap.com/bucket"] == "ml-models-2"
    for response in (created, listed, one, changed):
        assert SECRET_KEY not in response.text and ACCESS_KEY not in response.text

    deleted = assert_conforms(await api.delete("/v2/admin/objectStoreSecrets/models", headers=DEFAULT))
    assert deleted.status_code == 202
    gone = assert_conforms(await api.get("/v2/admin/objectStoreSecrets/models", headers=DEFAULT))
    assert gone.status_code == 404
    assert assert_conforms(await api.delete("/v2/admin/objectStoreSecrets/models", headers=DEFAULT)).status_code == 404


async def test_secrets_are_listed_and_paged_by_name(api):
    for name in ("c-store", "a-store", "b-store"):
        await api.post("/v2/admin/objectStoreSecrets", json=s3_secret(name), headers=DEFAULT)
    page = assert_conforms(await api.get("/v2/admin/objectStoreSecrets", headers=DEFAULT,
                                         params={"$top": 2, "$skip": 1, "$count": "true"})).json()
    assert page["count"] == 3 and [s["name"] for s in page["resources"]] == ["b-store", "c-store"]


@pytest.mark.parametrize("body, field", [
    (s3_secret(data={"AWS_ACCESS_KEY_ID": ACCESS_KEY}), "AWS_SECRET_ACCESS_KEY"),
    (s3_secret(bucket=None), "bucket"),
    (s3_secret(type="GCS"), "type"),
    (s3_secret(name="Not_A_Name"), "name"),
    ({"name": "x-store", "type": "S3", "bucket": "b"}, "data"),
    ({"name": "shelf", "type": "local", "pathPrefix": "/etc", "data": {}}, "pathPrefix"),
    ({"name": "shelf", "type": "local", "pathPrefix": "relative/dir", "data": {}}, "pathPrefix"),
    ({"name": "shelf", "type": "local", "data": {}}, "pathPrefix"),
])
async def test_a_secret_zeroserve_cannot_use_gets_400_naming_the_field(api, body, field):
    body = {key: value for key, value in body.items() if value is not None}
    response = assert_conforms(await api.post("/v2/admin/objectStoreSecrets", json=body, headers=DEFAULT))
    assert response.status_code == 400 and field in response.json()["error"]["message"], response.text
    assert SECRET_KEY not in response.text


async def test_creating_a_secret_twice_is_a_conflict_and_patch_must_keep_the_name(api):
    await api.post("/v2/admin/objectStoreSecrets", json=s3_secret(), headers=DEFAULT)
    again = assert_conforms(await api.post("/v2/admin/objectStoreSecrets", json=s3_secret(), headers=DEFAULT))
    assert again.status_code == 409
    renamed = assert_conforms(await api.patch("/v2/admin/objectStoreSecrets/models", headers=DEFAULT,
                                              json=s3_secret("other")))
    assert renamed.status_code == 400 and "name" in renamed.json()["error"]["message"]
    missing = assert_conforms(await api.patch("/v2/admin/objectStoreSecrets/nothing", headers=DEFAULT,
                                              json=s3_secret("nothing")))
    assert missing.status_code == 404


async def test_a_group_token_sees_only_its_own_groups_secrets(api, zeroserve):
    await api.post("/v2/admin/objectStoreSecrets", json=s3_secret(), headers=DEFAULT)
    token = await token_for(zeroserve, ["team-a"])
    async with httpx.AsyncClient(base_url=zeroserve.url, timeout=30,
                                 headers={"Authorization": f"Bearer {token}"}) as team:
        own = {"AI-Resource-Group": "team-a"}
        assert (await team.get("/v2/admin/objectStoreSecrets/models", headers=DEFAULT)).status_code == 404
        assert (await team.get("/v2/admin/objectStoreSecrets/models", headers=own)).status_code == 404
        assert (await team.get("/v2/admin/objectStoreSecrets", headers=own)).json() == {"count": 0, "resources": []}
        assert (await team.delete("/v2/admin/objectStoreSecrets/models", headers=DEFAULT)).status_code == 404
        # An ai:// URL resolves through the caller's group: team-a has no secret "models".
        refused = await team.post("/v2/lm/artifacts", headers=own, json={
            "name": "iris", "kind": "model", "url": "ai://models/iris", "scenarioId": "model-serving"})
        assert refused.status_code == 400 and "models" in refused.json()["error"]["message"]
    assert (await api.get("/v2/admin/objectStoreSecrets/models", headers=DEFAULT)).status_code == 200


# -- ai:// artifacts of a local object store -----------------------------------------------------------


@pytest.fixture
def shelf(zeroserve) -> Path:
    directory = zeroserve.settings.data_dir / "shelf"
    train_iris_sklearn(directory / "iris")
    return directory


async def test_an_ai_url_of_a_local_object_store_is_staged_from_its_directory(api, zeroserve, listen, shelf):
    statuses = await listen(zeroserve, "zeroserve.default.artifact.status")
    created = await api.post("/v2/admin/objectStoreSecrets", json=local_secret(shelf), headers=DEFAULT)
    assert created.status_code == 202, created.text
    registered = await register(api, "ai://shelf/iris")
    assert registered.status_code == 201, registered.text
    artifact_id = registered.json()["id"]
    staged = await statuses.wait_for(lambda e: e["id"] == artifact_id and e["status"] in ("staged", "rejected"))
    assert staged["status"] == "staged", staged
    assert (Path(staged["localPath"]) / "model.joblib").read_bytes() == (shelf / "iris" / "model.joblib").read_bytes()
    read = assert_conforms(await api.get(f"/v2/lm/artifacts/{artifact_id}", headers=DEFAULT)).json()
    assert read["url"] == "ai://shelf/iris", "the artifact keeps the URL it was registered with"


@pytest.mark.parametrize("path", ["../sources", "iris/../../sources", "outside-link"])
async def test_an_ai_url_cannot_climb_out_of_its_local_object_store(api, zeroserve, shelf, path):
    elsewhere = zeroserve.settings.data_dir / "sources"
    train_iris_sklearn(elsewhere)
    (shelf / "outside-link").symlink_to(elsewhere)
    await api.post("/v2/admin/objectStoreSecrets", json=local_secret(shelf), headers=DEFAULT)
    refused = await register(api, f"ai://shelf/{path}")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "InvalidArtifactUri", refused.text


@pytest.mark.slow
async def test_a_deployment_of_an_ai_url_serves_the_model_from_the_local_object_store(api, zeroserve, listen, shelf):
    statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
    await api.post("/v2/admin/objectStoreSecrets", json=local_secret(shelf), headers=DEFAULT)
    artifact_id = (await register(api, "ai://shelf/iris")).json()["id"]
    request = DeploymentRequested(id="iris-shelf", executable_id="sklearn", input_artifacts={"model": artifact_id})
    await zeroserve.platform.bus.publish(new_event(request, source="/tests"), "default")
    running = await statuses.wait_for(lambda e: e["id"] == "iris-shelf" and e["status"] in ("RUNNING", "DEAD"),
                                      timeout=60)
    assert running["status"] == "RUNNING", running
    record = await zeroserve.platform.store.deployments.get("default", "iris-shelf")
    uri = record.inference_service["spec"]["predictor"]["model"]["storageUri"]
    assert uri == (shelf / "iris").resolve().as_uri()
    predicted = await api.post(f"{running['deploymentUrl']}/v1/models/iris-shelf:predict",
                               json={"instances": [[6.8, 2.8, 4.8, 1.4]]}, timeout=60)
    assert predicted.status_code == 200, predicted.text


# -- ai:// artifacts of an S3 object store (moto on loopback) ----------------------------------------


@pytest.fixture
def s3_api() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"{host}:{port}"
    server.stop()


def upload(endpoint: str, files: dict[str, bytes]) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=f"http://{endpoint}", region_name="us-east-1",
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    client.create_bucket(Bucket="ml-models")
    for key, content in files.items():
        client.put_object(Bucket="ml-models", Key=key, Body=content)


async def test_an_ai_url_of_an_s3_object_store_is_fetched_with_the_secrets_keys(api, zeroserve, listen, s3_api):
    upload(s3_api, {"team/iris/model.joblib": b"weights", "team/iris/config/meta.json": b"{}",
                    "team/iris2/model.joblib": b"another model"})
    everything = await listen(zeroserve, "zeroserve.>")
    secret = s3_secret(endpoint=s3_api, usehttps="0", region="us-east-1")
    assert (await api.post("/v2/admin/objectStoreSecrets", json=secret, headers=DEFAULT)).status_code == 202
    artifact_id = (await register(api, "ai://models/iris")).json()["id"]
    staged = await everything.wait_for(lambda e: e.get("id") == artifact_id and e.get("status") in (
        "staged", "rejected"))
    assert staged["status"] == "staged", staged
    local = Path(staged["localPath"])
    assert (local / "model.joblib").read_bytes() == b"weights"
    assert (local / "config" / "meta.json").exists() and not (local / "iris2").exists()

    assert not any(key.startswith("AWS_ACCESS") or key.startswith("AWS_SECRET") for key in os.environ)
    assert all(SECRET_KEY not in json.dumps(event) for event in everything.json()), "a key in an event"
    # The copy fetched with the group's keys is not the one a plain s3:// URL of anyone would find.
    assert zeroserve.platform.models.staged("s3://ml-models/team/iris") is None
    assert zeroserve.platform.models.staged("s3://ml-models/team/iris", "default") == local


async def test_an_s3_artifact_that_is_not_there_is_rejected_with_the_reason(api, zeroserve, listen, s3_api):
    upload(s3_api, {})
    statuses = await listen(zeroserve, "zeroserve.default.artifact.status")
    secret = s3_secret(endpoint=s3_api, usehttps="0", region="us-east-1")
    await api.post("/v2/admin/objectStoreSecrets", json=secret, headers=DEFAULT)
    artifact_id = (await register(api, "ai://models/nothing-here")).json()["id"]
    rejected = await statuses.wait_for(lambda e: e["id"] == artifact_id and e["status"] == "rejected")
    assert rejected["reason"] == "ArtifactNotFound" and SECRET_KEY not in json.dumps(rejected)
