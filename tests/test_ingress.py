"""POST /v2/events: CloudEvents over HTTP in binary, structured and batch mode, checked before they reach NATS."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from fastapi import FastAPI

from tests.conftest import token_for
from zeroserve.gateway import ingress, subscriptions, webhooks
from zeroserve.gateway.ingress import MAX_BODY_BYTES
from zeroserve.node import Node


def model_file(zeroserve: Node, name: str = "model.joblib") -> str:
    path = Path(zeroserve.settings.data_dir) / "sources" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not really a model")
    return path.as_uri()


def structured(event_id: str, event_type: str = "io.zeroserve.deployment.stopped", /, **data: object) -> dict:
    return {"specversion": "1.0", "id": event_id, "source": "/tests", "type": event_type,
            "data": data or {"id": "iris"}}


async def test_a_binary_mode_event_reaches_nats_and_its_artifact_is_registered(zeroserve, api, listen):
    url = model_file(zeroserve)
    created = await listen(zeroserve, "zeroserve.default.artifact.created")
    statuses = await listen(zeroserve, "zeroserve.default.artifact.status")

    response = await api.post("/v2/events", headers={
        "ce-specversion": "1.0", "ce-id": "upload-1", "ce-type": "io.zeroserve.artifact.created",
        # Percent-encoded, as the HTTP binding says: the source has a space and a non-ASCII letter.
        "ce-source": "/ci/my%20pipeline/%C3%A9t%C3%A9", "Content-Type": "application/json",
    }, content=json.dumps({"id": "iris-model", "name": "iris", "url": url}))

    assert response.status_code == 202, response.text
    assert response.json() == {"group": "default", "events": [
        {"id": "upload-1", "type": "io.zeroserve.artifact.created", "duplicate": False}]}
    await created.wait_for(lambda data: data.get("id") == "iris-model")
    assert created.messages[0].headers["Nats-Msg-Id"] == "upload-1"
    assert created.messages[0].headers["ce-source"] == "/ci/my%20pipeline/%C3%A9t%C3%A9"
    await statuses.wait_for(lambda data: data == {"id": "iris-model", "status": "registered", "url": url})


async def test_a_structured_event_goes_to_the_callers_resource_group(zeroserve, listen):
    stopped = await listen(zeroserve, "zeroserve.team-a.deployment.stopped")
    token = await token_for(zeroserve, ["team-a"])
    async with httpx.AsyncClient(base_url=zeroserve.url, headers={"Authorization": f"Bearer {token}"}) as http:
        response = await http.post("/v2/events", headers={
            "Content-Type": "application/cloudevents+json", "AI-Resource-Group": "team-a"},
            content=json.dumps(structured("stop-1")))
        assert response.status_code == 202, response.text
        assert response.json()["group"] == "team-a"
        await stopped.wait_for(lambda data: data == {"id": "iris"})

        other = await http.post("/v2/events", headers={
            "Content-Type": "application/cloudevents+json", "AI-Resource-Group": "team-b"},
            content=json.dumps(structured("stop-2")))
        assert other.status_code == 404


async def test_sending_the_same_event_again_is_flagged_as_a_duplicate(api):
    headers = {"Content-Type": "application/cloudevents+json"}
    first = await api.post("/v2/events", headers=headers, content=json.dumps(structured("again-1")))
    second = await api.post("/v2/events", headers=headers, content=json.dumps(structured("again-1")))
    assert first.json()["events"][0]["duplicate"] is False
    assert second.status_code == 202
    assert second.json()["events"][0]["duplicate"] is True


async def test_a_batch_publishes_every_event_in_order(zeroserve, api, listen):
    deleted = await listen(zeroserve, "zeroserve.default.deployment.*")
    batch = [structured("b-1", id="dep-one"), structured("b-2", "io.zeroserve.deployment.deleted", id="dep-two")]
    response = await api.post("/v2/events", headers={"Content-Type": "application/cloudevents-batch+json"},
                              content=json.dumps(batch))
    assert response.status_code == 202, response.text
    assert [e["id"] for e in response.json()["events"]] == ["b-1", "b-2"]
    await deleted.wait_for(lambda data: data == {"id": "dep-two"})
    requests = [m.subject for m in deleted.messages if m.subject.endswith(("stopped", "deleted"))]
    assert requests == ["zeroserve.default.deployment.stopped", "zeroserve.default.deployment.deleted"]


async def test_a_batch_with_one_bad_event_publishes_none_and_names_the_event_and_field(zeroserve, api, listen):
    everything = await listen(zeroserve, "zeroserve.default.>")
    batch = [structured("ok-1", id="dep-one"),
             structured("bad-2", "io.zeroserve.deployment.requested", id="dep-two")]  # no executableId
    response = await api.post("/v2/events", headers={"Content-Type": "application/cloudevents-batch+json"},
                              content=json.dumps(batch))
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "event 1 (id 'bad-2')" in message and "data.executableId" in message
    # The valid first event was not published either: a later one would have shown on the subject.
    probe = await api.post("/v2/events", headers={"Content-Type": "application/cloudevents+json"},
                           content=json.dumps(structured("probe", id="probe")))
    assert probe.status_code == 202
    await everything.wait_for(lambda data: data == {"id": "probe"})
    # One connection publishes both in order: had the valid first event gone out, it would come first.
    assert json.loads(everything.messages[0].data) == {"id": "probe"}


async def test_events_users_may_not_send_or_that_are_broken_are_400_saying_why(api):
    structured_mode = {"Content-Type": "application/cloudevents+json"}
    cases = {
        "unknown type": (structured_mode, json.dumps(structured("e1", "io.zeroserve.model.exploded")),
                         "unknown event type 'io.zeroserve.model.exploded'"),
        "out type": (structured_mode, json.dumps(structured("e2", "io.zeroserve.deployment.status",
                                                            id="iris", status="RUNNING")),
                     "announced by zeroserve itself"),
        "missing field": (structured_mode, json.dumps(structured("e3", "io.zeroserve.artifact.created",
                                                                 id="a", name="a")), "data.url: Field required"),
        "bad JSON": (structured_mode, "{not json", "not valid JSON"),
        "missing attribute": (structured_mode, json.dumps({"specversion": "1.0", "id": "e4", "type": "x"}),
                              "missing required attribute 'source'"),
        "bad data JSON in binary mode": (
            {"ce-specversion": "1.0", "ce-id": "e5", "ce-source": "/t", "ce-type": "io.zeroserve.deployment.stopped",
             "Content-Type": "application/json"}, "{", "data is not valid JSON"),
        "not a CloudEvent": ({"Content-Type": "application/json"}, json.dumps({"id": "iris"}), "not a CloudEvent"),
        "artifact without a usable id": (structured_mode, json.dumps(structured(
            "Upload_1", "io.zeroserve.artifact.created", name="a", url="s3://b/k")), "data.id: required"),
        "extension name NATS cannot carry": (structured_mode, json.dumps(structured("e6") | {"my-ext": "1"}),
                                             "invalid attribute name 'my-ext'"),
        "batch of nothing": ({"Content-Type": "application/cloudevents-batch+json"}, "[]", "batch is empty"),
        "batch not an array": ({"Content-Type": "application/cloudevents-batch+json"}, "{}", "JSON array"),
    }
    for case, (headers, body, expected) in cases.items():
        response = await api.post("/v2/events", headers=headers, content=body)
        assert response.status_code == 400, (case, response.text)
        error = response.json()["error"]
        assert error["code"] == "InvalidEvent", case
        assert expected in error["message"], (case, error["message"])


async def test_a_body_over_the_limit_is_413(api):
    big = json.dumps(structured("big", id="iris") | {"padding": "x" * MAX_BODY_BYTES})
    response = await api.post("/v2/events", headers={"Content-Type": "application/cloudevents+json"}, content=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PayloadTooLarge"


async def test_events_need_a_token(zeroserve):
    async with httpx.AsyncClient(base_url=zeroserve.url) as http:
        response = await http.post("/v2/events", headers={"Content-Type": "application/cloudevents+json"},
                                   content=json.dumps(structured("anon")))
    assert response.status_code == 401


async def test_the_api_description_shows_the_content_modes(zeroserve):
    # Only this part's routers: the whole app's description depends on every other router too.
    app = FastAPI()
    for router in (ingress.router, webhooks.router, subscriptions.router):
        app.include_router(router)
    described = app.openapi()
    publish = described["paths"]["/v2/events"]["post"]
    # Binary mode's rules are in its ce-* headers, which a body's schema cannot require: said in words.
    assert set(publish["requestBody"]["content"]) == {"application/cloudevents+json",
                                                      "application/cloudevents-batch+json"}
    assert "Binary mode" in publish["description"] and "ce-specversion" in publish["description"]
    assert {"/v2/subscriptions", "/v2/subscriptions/{id}", "/v2/webhooks/{name}"} <= set(described["paths"])


async def test_a_structured_events_source_may_be_any_text_within_its_bound(zeroserve, api, listen):
    # The fuzz test (seed 115299403) sent a source of two non-ASCII letters, which the description refused
    # and the gateway took: a source is a URI reference, any text, as in binary mode; only its length is bound.
    stopped = await listen(zeroserve, "zeroserve.default.deployment.stopped")
    headers = {"Content-Type": "application/cloudevents+json"}
    event = {**structured("source-1"), "source": "/ci/my pipeline/été"}
    accepted = await api.post("/v2/events", headers=headers, content=json.dumps(event))
    assert accepted.status_code == 202, accepted.text
    await stopped.wait_for(lambda data: data == {"id": "iris"})
    assert stopped.messages[0].headers["ce-source"] == "/ci/my%20pipeline/%C3%A9t%C3%A9"

    too_long = await api.post("/v2/events", headers=headers,
                              content=json.dumps({**structured("source-2"), "source": "/" * 1025}))
    assert too_long.status_code == 400
    assert "source must be 1-1024 characters" in too_long.json()["error"]["message"]
