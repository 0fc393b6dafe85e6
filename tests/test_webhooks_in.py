"""POST /v2/webhooks/<name>: signed webhooks from S3, MLflow and any other sender become events."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from standardwebhooks import Webhook

from zeroserve.events import ID_PATTERN
from zeroserve.node import Node
from zeroserve.settings import Settings, WebhookSource

S3_SECRET = "whsec_" + base64.b64encode(b"s3-secret-of-thirty-two-bytes!!!").decode()
MLFLOW_SECRET = "whsec_" + base64.b64encode(b"mlflow-secret-thirty-two-bytes!!").decode()
CI_SECRET = "whsec_" + base64.b64encode(b"ci-secret-of-thirty-two-bytes!!!").decode()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhooks": {
        "bucket": WebhookSource(kind="s3", secret=SecretStr(S3_SECRET)),
        "registry": WebhookSource(kind="mlflow", secret=SecretStr(MLFLOW_SECRET), aliases={
            "champion": {"deployment": "iris", "executable": "sklearn", "resourcePlan": "starter"}}),
        "ci": WebhookSource(kind="generic", secret=SecretStr(CI_SECRET), group="team-a",
                            event_type="io.zeroserve.artifact.created"),
    }, "webhook_tolerance_s": 300.0})


@pytest.fixture
async def http(zeroserve: Node) -> Any:
    # No token: webhooks are believed by their signature alone.
    async with httpx.AsyncClient(base_url=zeroserve.url, timeout=30) as client:
        yield client


async def send(http: httpx.AsyncClient, name: str, body: Any, secret: str, *, webhook_id: str | None = None,
               timestamp: int | None = None, mlflow_headers: bool = False) -> httpx.Response:
    """POST a webhook signed as its sender signs it (with the reference library, not zeroserve's code)."""
    content = json.dumps(body)
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    if mlflow_headers:  # MLflow keys its HMAC with the UTF-8 bytes of the secret it was given
        signature = Webhook(secret.encode()).sign(webhook_id, datetime.fromtimestamp(timestamp, UTC), content)
        headers = {"X-MLflow-Delivery-Id": webhook_id, "X-MLflow-Timestamp": str(timestamp),
                   "X-MLflow-Signature": signature}
    else:
        signature = Webhook(secret).sign(webhook_id, datetime.fromtimestamp(timestamp, UTC), content)
        headers = {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}
    return await http.post(f"/v2/webhooks/{name}", content=content,
                           headers={**headers, "Content-Type": "application/json"})


def s3_record(event_name: str, key: str, bucket: str = "models") -> dict[str, Any]:
    return {"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2025-01-01T00:00:00.000Z", "eventName": event_name,
            "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                   "object": {"key": key, "size": 1024, "eTag": "d41d8cd98f00b204e9800998ecf8427e"}}}


def model_file(zeroserve: Node, name: str) -> str:
    path = Path(zeroserve.settings.data_dir) / "sources" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not really a model")
    return path.as_uri()


async def test_a_new_object_in_a_bucket_becomes_an_artifact_and_removals_are_noted(zeroserve, http, listen):
    created = await listen(zeroserve, "zeroserve.default.artifact.created")
    notification = {"Records": [
        s3_record("ObjectCreated:Put", "iris/model+v2.joblib"),  # AWS: key URL-encoded, '+' for a space
        s3_record("s3:ObjectRemoved:Delete", "iris/old.joblib"),  # MinIO names events with the s3: prefix
    ]}
    response = await send(http, "bucket", notification, S3_SECRET)

    assert response.status_code == 202, response.text
    answer = response.json()
    assert [e["type"] for e in answer["events"]] == ["io.zeroserve.artifact.created"]
    assert "ObjectRemoved:Delete is not acted on" in answer["note"]
    data = await created.wait_for(lambda d: d["url"] == "s3://models/iris/model v2.joblib")
    assert data["name"] == "iris/model v2.joblib"
    assert re.match(ID_PATTERN, data["id"]) and data["id"].startswith("model-v2-")


async def test_a_notification_with_nothing_to_do_is_200_with_a_note(http):
    response = await send(http, "bucket", {"Records": [s3_record("s3:ObjectRemoved:Delete", "a.joblib")]},
                          S3_SECRET)
    assert response.status_code == 200
    assert response.json()["events"] == []
    test_event = await send(http, "bucket", {"Service": "Amazon S3", "Event": "s3:TestEvent"}, S3_SECRET)
    assert test_event.status_code == 200 and "no Records" in test_event.json()["note"]


async def test_a_webhook_signed_with_the_wrong_secret_is_401(http):
    response = await send(http, "bucket", {"Records": []}, CI_SECRET)
    assert response.status_code == 401
    assert "no webhook-signature matches" in response.json()["error"]["message"]


async def test_a_webhook_without_signature_headers_is_401_naming_them(http):
    response = await http.post("/v2/webhooks/bucket", json={"Records": []}, headers={"webhook-id": "msg_1"})
    assert response.status_code == 401
    assert "missing header(s): webhook-timestamp, webhook-signature" in response.json()["error"]["message"]


async def test_a_webhook_with_a_stale_timestamp_is_401(http):
    response = await send(http, "bucket", {"Records": []}, S3_SECRET, timestamp=int(time.time()) - 301)
    assert response.status_code == 401
    assert "outside the 300 s window" in response.json()["error"]["message"]
    future = await send(http, "bucket", {"Records": []}, S3_SECRET, timestamp=int(time.time()) + 600)
    assert future.status_code == 401 and "in the future" in future.json()["error"]["message"]


async def test_a_replayed_webhook_is_401_and_causes_nothing(zeroserve, http, listen):
    created = await listen(zeroserve, "zeroserve.default.artifact.created")
    body = {"Records": [s3_record("ObjectCreated:Put", "replayed.joblib")]}
    content = json.dumps(body)
    timestamp = str(int(time.time()))
    headers = {"webhook-id": "msg_replayed", "webhook-timestamp": timestamp, "Content-Type": "application/json",
               "webhook-signature": Webhook(S3_SECRET).sign("msg_replayed", datetime.fromtimestamp(
                   int(timestamp), UTC), content)}
    first = await http.post("/v2/webhooks/bucket", content=content, headers=headers)
    again = await http.post("/v2/webhooks/bucket", content=content, headers=headers)

    assert first.status_code == 202
    assert again.status_code == 401
    assert "a replay is not acted on" in again.json()["error"]["message"]
    await created.wait_for(lambda d: d["name"] == "replayed.joblib")
    assert len(created.messages) == 1


async def test_a_senders_retry_after_a_lost_response_is_acknowledged_without_a_second_event(zeroserve, http, listen):
    created = await listen(zeroserve, "zeroserve.default.artifact.created")
    body = {"Records": [s3_record("ObjectCreated:Put", "retried.joblib")]}
    first = await send(http, "bucket", body, S3_SECRET, webhook_id="msg_retried", timestamp=int(time.time()) - 5)
    retry = await send(http, "bucket", body, S3_SECRET, webhook_id="msg_retried")

    assert first.status_code == 202
    assert retry.status_code == 200
    assert retry.json()["duplicate"] is True and retry.json()["events"] == []
    await created.wait_for(lambda d: d["name"] == "retried.joblib")
    # Had it been published again (even as a JetStream duplicate, under the same id), core NATS would show it.
    probe = await send(http, "bucket", {"Records": [s3_record("ObjectCreated:Put", "probe.joblib")]}, S3_SECRET)
    assert probe.status_code == 202
    await created.wait_for(lambda d: d["name"] == "probe.joblib")
    assert [json.loads(m.data)["name"] for m in created.messages] == ["retried.joblib", "probe.joblib"]


async def test_an_unknown_webhook_source_is_404(http):
    response = await send(http, "nobody", {"Records": []}, S3_SECRET)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NotFound"


def mlflow_body(entity: str, action: str, data: dict[str, Any]) -> dict[str, Any]:
    # The envelope of mlflow/webhooks/delivery.py.
    return {"entity": entity, "action": action, "timestamp": "2025-08-01T00:00:00+00:00", "data": data}


async def test_an_mlflow_model_version_registers_an_artifact_and_an_alias_deploys_and_updates_it(
        zeroserve, http, listen):
    statuses = await listen(zeroserve, "zeroserve.default.artifact.status")
    requested = await listen(zeroserve, "zeroserve.default.deployment.requested")
    v1, v2 = model_file(zeroserve, "v1.joblib"), model_file(zeroserve, "v2.joblib")

    for version, url in (("1", v1), ("2", v2)):
        response = await send(http, "registry", mlflow_body("model_version", "created", {
            "name": "iris", "version": version, "source": url, "run_id": "abcd1234", "tags": {},
            "description": "an iris classifier"}), MLFLOW_SECRET, mlflow_headers=True)
        assert response.status_code == 202, response.text
    await statuses.wait_for(lambda d: d == {"id": "iris-v1", "status": "registered", "url": v1})
    await statuses.wait_for(lambda d: d == {"id": "iris-v2", "status": "registered", "url": v2})

    # Standard Webhooks headers work for an MLflow source too (e.g. through a signing relay).
    deploy = await send(http, "registry", mlflow_body("model_version_alias", "created", {
        "name": "iris", "alias": "champion", "version": "1"}), MLFLOW_SECRET)
    assert deploy.status_code == 202, deploy.text
    first = await requested.wait_for(lambda d: d["inputArtifacts"] == {"model": "iris-v1"})
    assert first == {"id": "iris", "executableId": "sklearn", "parameters": {"resourcePlan": "starter"},
                     "inputArtifacts": {"model": "iris-v1"}}

    update = await send(http, "registry", mlflow_body("model_version_alias", "created", {
        "name": "iris", "alias": "champion", "version": "2"}), MLFLOW_SECRET, mlflow_headers=True)
    assert update.status_code == 202
    second = await requested.wait_for(lambda d: d["inputArtifacts"] == {"model": "iris-v2"})
    assert second["id"] == "iris"  # the same deployment: an update in place


async def test_an_mlflow_alias_that_deploys_nothing_and_other_events_are_noted(http):
    alias = await send(http, "registry", mlflow_body("model_version_alias", "created", {
        "name": "iris", "alias": "challenger", "version": "3"}), MLFLOW_SECRET, mlflow_headers=True)
    assert alias.status_code == 200
    assert "alias 'challenger' deploys nothing" in alias.json()["note"]
    tag = await send(http, "registry", mlflow_body("model_version_tag", "set", {
        "name": "iris", "version": "3", "key": "k", "value": "v"}), MLFLOW_SECRET, mlflow_headers=True)
    assert tag.status_code == 200 and "model_version_tag.set is not acted on" in tag.json()["note"]


async def test_an_mlflow_webhook_signed_with_another_secret_is_401(http):
    response = await send(http, "registry", mlflow_body("model_version", "created", {
        "name": "iris", "version": "9", "source": "s3://b/k"}), S3_SECRET, mlflow_headers=True)
    assert response.status_code == 401


async def test_a_generic_webhook_body_becomes_the_data_of_its_sources_event_type(zeroserve, http, listen):
    statuses = await listen(zeroserve, "zeroserve.team-a.artifact.status")
    url = model_file(zeroserve, "ci.joblib")
    response = await send(http, "ci", {"id": "ci-model", "name": "from ci", "url": url}, CI_SECRET)
    assert response.status_code == 202, response.text
    assert response.json()["group"] == "team-a"
    await statuses.wait_for(lambda d: d == {"id": "ci-model", "status": "registered", "url": url})


async def test_a_generic_webhook_with_invalid_data_is_400_naming_the_field(http):
    response = await send(http, "ci", {"id": "ci-model", "name": "from ci"}, CI_SECRET)
    assert response.status_code == 400
    assert "data.url: Field required" in response.json()["error"]["message"]
