"""zeroserve.client against a real embedded zeroserve: what a Python user of the API sees.

The blocking ``Client`` runs in a thread: the embedded gateway shares the test's event loop.
"""

from __future__ import annotations

import asyncio
import uuid
from time import monotonic

import httpx
import pytest
from cloudevents.http import CloudEvent
from conftest import token_for

from zeroserve.client import ApiError, AsyncClient, Client, Connection, NotConfigured, connection
from zeroserve.events import ArtifactCreated, DeploymentStopped, new_event


def model_url(zeroserve, name: str) -> str:
    """A file:// URL inside the allowed roots (the data directory); nothing need be there."""
    return (zeroserve.settings.data_dir / "models-src" / name).resolve().as_uri()


@pytest.fixture
async def zs(zeroserve):
    """The async client as a local operator gets it: from the data directory `zeroserve up` wrote."""
    async with AsyncClient.local(zeroserve.settings) as client:
        yield client


@pytest.fixture
def sync_client(zeroserve):
    with Client.local(zeroserve.settings) as client:
        yield client


async def test_local_client_finds_the_gateway_and_operator_credentials_of_zeroserve_up(zeroserve):
    found = connection(zeroserve.settings)
    assert found.url == zeroserve.url
    assert found.client_id and found.client_secret and found.token is None


def test_without_zeroserve_up_or_settings_the_client_says_how_to_start_it(settings):
    with pytest.raises(NotConfigured, match="zeroserve up"):
        Client.local(settings)


async def test_client_registers_an_artifact_and_reads_it_back_with_python_names(zeroserve, sync_client):
    url = model_url(zeroserve, "iris")
    created = await asyncio.to_thread(sync_client.create_artifact, "iris", url, description="a test model",
                                      labels={"ext.ai.sap.com/team": "a"})
    artifact = await asyncio.to_thread(sync_client.artifact, created.id)
    assert (artifact.id, artifact.name, artifact.kind, artifact.url) == (created.id, "iris", "model", url)
    assert artifact.scenario_id == "model-serving" and artifact.description == "a test model"
    assert [(label.key, label.value) for label in artifact.labels] == [("ext.ai.sap.com/team", "a")]
    assert artifact.created_at is not None
    listed = await asyncio.to_thread(sync_client.artifacts)
    assert created.id in [a.id for a in listed]
    assert await asyncio.to_thread(sync_client.count_artifacts) == len(listed)


async def test_async_client_creates_a_configuration_and_lists_it(zeroserve, zs):
    artifact = await zs.create_artifact("iris", model_url(zeroserve, "iris"))
    created = await zs.create_configuration("iris-starter", executable_id="sklearn",
                                            parameters={"resourcePlan": "starter"}, artifacts={"model": artifact.id})
    configuration = await zs.configuration(created.id)
    assert configuration.executable_id == "sklearn" and configuration.scenario_id == "model-serving"
    assert [(b.key, b.value) for b in configuration.parameter_bindings] == [("resourcePlan", "starter")]
    assert [(b.key, b.artifact_id) for b in configuration.input_artifact_bindings] == [("model", artifact.id)]
    assert created.id in [c.id for c in await zs.configurations()]


async def test_a_deployment_made_through_the_client_is_listed_and_read_back(zeroserve, zs, sync_client):
    artifact = await zs.create_artifact("iris", model_url(zeroserve, "not-there"))
    configuration = await zs.create_configuration("iris", executable_id="sklearn", artifacts={"model": artifact.id})
    created = await zs.create_deployment(configuration.id)
    assert created.id and created.message
    deployment = await zs.deployment(created.id)
    assert deployment.id == created.id and deployment.configuration_id == configuration.id
    assert deployment.executable_id == "sklearn"
    assert deployment.status in {"UNKNOWN", "PENDING", "DEAD", "RUNNING"}
    listed = await asyncio.to_thread(sync_client.deployments)
    assert [d.id for d in listed] == [created.id]
    assert await zs.count_deployments() == 1


async def test_the_event_stream_of_a_deployment_starts_with_its_status_and_follows_it(zeroserve, zs):
    artifact = await zs.create_artifact("iris", model_url(zeroserve, "not-there"))
    configuration = await zs.create_configuration("iris", executable_id="sklearn", artifacts={"model": artifact.id})
    created = await zs.create_deployment(configuration.id)
    seen = []
    async with zs.deployment_events(created.id, timeout=30) as events:
        async for event in events:
            seen.append(event)
            # A model that is not there: the deployment ends DEAD with a reason.
            if event.type == "io.zeroserve.deployment.status" and event.data["status"] == "DEAD":
                break
    assert seen[0].type == "io.zeroserve.deployment.status" and seen[0].data["id"] == created.id
    dead = seen[-1].data
    assert dead["reason"], dead
    deployment = await zs.deployment(created.id)
    assert deployment.status == "DEAD" and deployment.reason == dead["reason"]


async def test_publish_sends_zeroserve_events_and_says_which_were_duplicates(zs):
    event = new_event(DeploymentStopped(id="nothing-here"), source="/tests", id=f"stop-{uuid.uuid4()}")
    first = await zs.publish(event)
    again = await zs.publish(event)
    assert [(p.id, p.type, p.duplicate) for p in first] == [(event["id"], "io.zeroserve.deployment.stopped", False)]
    assert again[0].duplicate is True
    batch = await zs.publish(ArtifactCreated(id="a-one", name="one", url="file:///one"),
                             ArtifactCreated(id="a-two", name="two", url="file:///two"))
    assert [p.type for p in batch] == ["io.zeroserve.artifact.created"] * 2


async def test_refusals_arrive_as_api_error_with_the_sap_code_and_message(zeroserve, zs, sync_client):
    with pytest.raises(ApiError) as missing:
        await zs.deployment("does-not-exist")
    assert (missing.value.status, missing.value.code) == (404, "NotFound")
    assert "does-not-exist" in missing.value.message
    with pytest.raises(ApiError) as unknown_configuration:
        await asyncio.to_thread(sync_client.create_deployment, "no-such-configuration")
    assert (unknown_configuration.value.status, unknown_configuration.value.code) == (400, "ConfigurationNotFound")
    with pytest.raises(ApiError) as invalid:
        await zs.publish(CloudEvent({"id": "e1", "source": "/t", "type": "io.zeroserve.deployment.requested"},
                                    {"id": "x"}))
    assert (invalid.value.status, invalid.value.code) == (400, "InvalidEvent")
    assert "executableId" in invalid.value.message


async def test_wrong_credentials_and_an_unreachable_gateway_are_api_errors_too(zeroserve):
    async with AsyncClient(zeroserve.url, client_id="zs-0000000000000000", client_secret="wrong") as stranger:
        with pytest.raises(ApiError) as refused:
            await stranger.deployments()
    assert (refused.value.status, refused.value.code) == (401, "invalid_client")
    with Client("http://127.0.0.1:9", token="anything", timeout=2) as nowhere:
        with pytest.raises(ApiError) as unreachable:
            await asyncio.to_thread(nowhere.deployments)
    assert (unreachable.value.status, unreachable.value.code) == (0, "Unreachable")
    assert "127.0.0.1:9" in str(unreachable.value)


async def test_a_token_for_one_group_sees_that_group_only(zeroserve):
    token = await token_for(zeroserve, ["team-a"])
    async with AsyncClient(zeroserve.url, token=token, group="team-a") as team_a:
        assert await team_a.deployments() == []
        with pytest.raises(ApiError) as other:
            await team_a.in_group("default").deployments()
    assert (other.value.status, other.value.code) == (404, "NotFound")


async def test_the_client_renews_its_token_shortly_before_it_expires(zeroserve, monkeypatch):
    token_requests = []

    async def count(request: httpx.Request) -> None:
        if request.url.path == "/oauth/token":
            token_requests.append(request)

    found = connection(zeroserve.settings)
    http = httpx.AsyncClient(event_hooks={"request": [count]})
    async with AsyncClient(found.url, client_id=found.client_id, client_secret=found.client_secret,
                           http=http) as zs:
        await zs.deployments()
        await zs.deployments()
        assert len(token_requests) == 1, "one token serves many calls"
        lifetime = zeroserve.settings.token_ttl_s
        later = monotonic() + lifetime - 30  # inside the renewal margin, before the token expires
        monkeypatch.setattr("zeroserve.client.credentials.monotonic", lambda: later)
        await zs.deployments()
        assert len(token_requests) == 2, "renewed before it expired"


async def test_an_explicit_token_is_used_as_is(zeroserve):
    token = await token_for(zeroserve, ["*"])
    with Client.local(connection=Connection(zeroserve.url, token=token)) as zs:
        assert await asyncio.to_thread(zs.token) == token
        assert await asyncio.to_thread(zs.deployments) == []
