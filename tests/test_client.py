"""zeroserve.client against a real embedded zeroserve: what a Python user of the API sees.

The blocking ``Client`` runs in a thread: the embedded gateway shares the test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from time import monotonic

import httpx
import pytest
from cloudevents.http import CloudEvent
from conftest import token_for

from zeroserve.client import ApiError, AsyncClient, Client, Connection, NotConfigured, connection
from zeroserve.client.transport import retry_after
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


class Cable:
    """A loopback TCP relay to the gateway that can be cut, as a network drop cuts a long response."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [writer, upstream_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    def cut(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    async def close(self) -> None:
        self.cut()
        assert self.server is not None
        self.server.close()


def same_events(got: list, expected: list) -> bool:
    """The same events, each once, in the same order within each kind: status events and log records are
    kept in two streams, and replayed ones of the two may interleave otherwise than they did live."""
    def by_kind(events: list) -> dict[str, list]:
        kinds: dict[str, list] = {}
        for event in events:
            kinds.setdefault(event.type, []).append(event.data)
        return kinds

    return by_kind(got) == by_kind(expected)


async def followed_to_the_last_note(events) -> list:
    seen = []
    async for event in events:
        seen.append(event)
        if event.type == "io.zeroserve.deployment.log" and event.data["message"] == "note 3":
            return seen
    raise AssertionError(f"the stream ended before the last note: {seen}")


async def test_a_reconnecting_event_stream_gets_the_events_it_missed_and_none_twice(zeroserve, zs):
    artifact = await zs.create_artifact("iris", model_url(zeroserve, "not-there"))
    configuration = await zs.create_configuration("iris", executable_id="sklearn", artifacts={"model": artifact.id})
    created = await zs.create_deployment(configuration.id)
    async with zs.deployment_events(created.id, timeout=30) as events:
        everything = []  # its current status, then each event as it happened
        async for event in events:
            everything.append(event)
            if event.type == "io.zeroserve.deployment.status" and event.data["status"] == "DEAD":
                for n in (1, 2, 3):  # and three log records of the control plane's
                    await zeroserve.platform.logs.control("default", created.id, f"note {n}")
            if event.type == "io.zeroserve.deployment.log" and event.data["message"] == "note 3":
                break
    assert len(everything) >= 5 and len({event.id for event in everything}) == len(everything)

    # A client that saw the first two events and gives the second's id back gets the rest, as they were.
    async with zs.deployment_events(created.id, last_event_id=everything[1].id, timeout=30) as events:
        assert same_events(await followed_to_the_last_note(events), everything[2:])

    # A connection dropped after one event: the client opens it again with Last-Event-ID by itself.
    found = connection(zeroserve.settings)
    cable = Cable(int(zeroserve.url.rsplit(":", 1)[1]))
    through = await cable.start()
    async with AsyncClient(through, client_id=found.client_id, client_secret=found.client_secret) as dropping:
        seen = []
        async with dropping.deployment_events(created.id, last_event_id=everything[0].id, timeout=30) as events:
            async for event in events:
                seen.append(event)
                if len(seen) == 1:
                    cable.cut()
                if event.type == "io.zeroserve.deployment.log" and event.data["message"] == "note 3":
                    break
    await cable.close()
    assert same_events(seen, everything[1:]), "every event after the first, each once"


async def test_wait_until_running_says_why_a_deployment_will_not_run(zeroserve, zs, sync_client):
    artifact = await zs.create_artifact("iris", model_url(zeroserve, "not-there"))
    configuration = await zs.create_configuration("iris", executable_id="sklearn", artifacts={"model": artifact.id})
    created = await zs.create_deployment(configuration.id)
    with pytest.raises(ApiError) as dead:
        await zs.wait_until_running(created.id, timeout=60)
    assert dead.value.code == "ArtifactNotFound" and "DEAD" in dead.value.message
    with pytest.raises(ApiError, match="DEAD"):
        await asyncio.to_thread(sync_client.wait_until_running, created.id, 60)


@pytest.mark.parametrize("status, header, attempt, wait", [
    (429, "2", 0, 2.0),
    (503, "0", 2, 0.0),
    (503, "3600", 0, 30.0),  # at most MAX_RETRY_WAIT_S
    (429, "2", 3, None),  # RETRIES used up
    (500, "2", 0, None),  # only 429 and 503 ask for a retry
    (429, None, 0, None),
])
def test_a_429_or_503_with_retry_after_is_sent_again_after_the_wait_it_asks(status, header, attempt, wait):
    headers = {"Retry-After": header} if header is not None else {}
    response = httpx.Response(status, headers=headers)
    assert retry_after(response, attempt) == wait


def test_retry_after_as_an_http_date_is_a_wait_until_then():
    then = datetime.now(UTC) + timedelta(seconds=20)
    wait = retry_after(httpx.Response(429, headers={"Retry-After": format_datetime(then, usegmt=True)}), 0)
    assert wait is not None and 15 < wait <= 20


def test_the_client_takes_proxies_and_ca_certificates_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "absent.pem"))
    with pytest.raises(FileNotFoundError):
        Client("https://gateway.example", token="t")  # the bundle named is the one read
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    with Client("https://gateway.example", token="t") as client:
        assert client._http._transport_for_url(httpx.URL("https://gateway.example/v2")) is not client._http._transport
