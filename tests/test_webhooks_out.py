"""Webhooks out: /v2/subscriptions, and the platform's events delivered to a real HTTP receiver, signed."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import REGISTRY
from standardwebhooks import Webhook

from tests.conftest import token_for, until
from zeroserve.events import DeploymentStatus, Status, new_event
from zeroserve.node import Node
from zeroserve.settings import Settings
from zeroserve.webhooks import targets


@pytest.fixture
def allowed_networks() -> list[str] | None:
    """The receiver runs on 127.0.0.1, which deliveries may reach only when the operator allows it."""
    return ["127.0.0.0/8"]


@pytest.fixture
def settings(settings: Settings, allowed_networks: list[str] | None) -> Settings:
    # A long timeout: a held request must stay held until the test lets it go. A short ack wait: a delivery
    # that outlasts it must still not be handed out twice.
    changes: dict[str, Any] = {"webhook_delivery_attempts": 3, "webhook_delivery_backoff_s": [0.05, 0.1],
                               "webhook_delivery_timeout_s": 30.0, "ack_wait_s": 1.0}
    if allowed_networks is not None:  # None: the default, as an operator who set nothing has it
        changes["webhook_allowed_networks"] = [ipaddress.ip_network(network) for network in allowed_networks]
    return settings.model_copy(update=changes)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records every request; paths can fail, fail first, or hold."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[Received] = []
        self.fail_first: dict[str, int] = {}  # path -> failed attempts per webhook-id before a 200
        self.always_fail: set[str] = set()
        self.hold: set[str] = set()
        self.held = 0
        self.answered: list[str] = []
        self.release = asyncio.Event()
        self._arrived = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        request = Received(scope["path"], {k.decode().lower(): v.decode() for k, v in scope["headers"]}, body)
        self.requests.append(request)
        self._arrived.set()
        if request.path in self.hold:
            self.held += 1
            await self.release.wait()
        attempts = [r for r in self.requests
                    if r.path == request.path and r.headers.get("webhook-id") == request.headers.get("webhook-id")]
        failing = request.path in self.always_fail or len(attempts) <= self.fail_first.get(request.path, 0)
        self.answered.append(request.path)
        await send({"type": "http.response.start", "status": 503 if failing else 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"not within {timeout} s; received: {[(r.path, r.body) for r in self.requests]}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(remaining, 0.2))


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # signals stay pytest's


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    server = _Server(uvicorn.Config(receiver, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and not task.done(), "the receiver did not start"
        await asyncio.sleep(0.01)
    receiver.url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    yield receiver
    receiver.release.set()
    server.should_exit = True
    await task


async def subscribe(api: httpx.AsyncClient, url: str, *types: str, group: str = "default") -> dict[str, Any]:
    response = await api.post("/v2/subscriptions", json={"url": url, "eventTypes": list(types)},
                              headers={"AI-Resource-Group": group})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def announce(zeroserve: Node, deployment: str, group: str = "default") -> str:
    """A deployment.status event, as the platform announces one; returns its id."""
    assert zeroserve.platform is not None
    event = new_event(DeploymentStatus(id=deployment, status=Status.RUNNING), source="/tests", subject=deployment)
    await zeroserve.platform.bus.publish(event, group)
    return str(event["id"])


def deliveries(group: str, subscription: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value("zeroserve_webhook_deliveries_total",
                                      {"group": group, "subscription": subscription, "outcome": outcome})
    return value or 0.0


async def test_a_subscriber_gets_artifact_status_events_signed_with_its_secret(zeroserve, api, receiver):
    subscription = await subscribe(api, f"{receiver.url}/hook", "artifact.status")
    assert subscription["secret"].startswith("whsec_")
    assert subscription["eventTypes"] == ["io.zeroserve.artifact.status"]
    path = Path(zeroserve.settings.data_dir) / "sources" / "model.joblib"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"a model")

    published = await api.post("/v2/events", headers={"Content-Type": "application/cloudevents+json"},
                               content=json.dumps({"specversion": "1.0", "id": "up-1", "source": "/t",
                                                   "type": "io.zeroserve.artifact.created",
                                                   "data": {"id": "iris", "name": "iris", "url": path.as_uri()}}))
    assert published.status_code == 202

    await receiver.wait_for(lambda: len(receiver.at("/hook")) >= 2)
    for request in receiver.at("/hook"):
        assert request.headers["content-type"] == "application/cloudevents+json"
        # The receiver's check, with the reference library and the secret shown once at creation.
        Webhook(subscription["secret"]).verify(request.body, request.headers)
        with pytest.raises(Exception, match="signature"):
            Webhook("whsec_" + "A" * 43 + "=").verify(request.body, request.headers)
    events = [r.json() for r in receiver.at("/hook")]
    assert {e["data"]["status"] for e in events} == {"registered", "staged"}
    assert all(e["type"] == "io.zeroserve.artifact.status" and e["specversion"] == "1.0"
               and e["causationid"] == "up-1" and e["data"]["id"] == "iris" for e in events)


async def test_the_secret_is_shown_only_when_the_subscription_is_created(api, receiver):
    created = await subscribe(api, f"{receiver.url}/x", "deployment.status", "deployment.log")
    listed = (await api.get("/v2/subscriptions")).json()
    one = (await api.get(f"/v2/subscriptions/{created['id']}")).json()
    assert listed["count"] == 1
    assert "secret" not in listed["resources"][0] and "secret" not in one
    assert one == {k: v for k, v in created.items() if k != "secret"}
    assert one["lastDeliveries"] == []

    deleted = await api.delete(f"/v2/subscriptions/{created['id']}")
    assert deleted.status_code == 200
    assert (await api.get(f"/v2/subscriptions/{created['id']}")).status_code == 404
    assert (await api.delete(f"/v2/subscriptions/{created['id']}")).status_code == 404
    assert (await api.get("/v2/subscriptions")).json() == {"count": 0, "resources": []}


async def test_a_failing_receiver_gets_retries_with_the_same_webhook_id(zeroserve, api, receiver):
    receiver.fail_first["/flaky"] = 2
    subscription = await subscribe(api, f"{receiver.url}/flaky", "deployment.status")
    event_id = await announce(zeroserve, "iris")

    await receiver.wait_for(lambda: receiver.answered.count("/flaky") >= 3)
    attempts = receiver.at("/flaky")
    assert len(attempts) == 3
    assert len({a.headers["webhook-id"] for a in attempts}) == 1
    assert {a.json()["id"] for a in attempts} == {event_id}
    for attempt in attempts:  # each attempt is signed anew, and each signature holds
        Webhook(subscription["secret"]).verify(attempt.body, attempt.headers)
    await receiver.wait_for(lambda: deliveries("default", subscription["id"], "delivered") == 1)


async def test_a_subscription_shows_its_last_deliveries_newest_first(zeroserve, api, receiver):
    receiver.fail_first["/shown"] = 1
    subscription = await subscribe(api, f"{receiver.url}/shown", "deployment.status")
    first = await announce(zeroserve, "iris")
    await receiver.wait_for(lambda: deliveries("default", subscription["id"], "delivered") == 1)
    receiver.always_fail.add("/shown")
    second = await announce(zeroserve, "iris-2")

    async def shown() -> list[dict[str, Any]]:
        found = (await api.get(f"/v2/subscriptions/{subscription['id']}")).json()["lastDeliveries"]
        return list(found) if len(found) == 2 else []

    latest, earlier = await until(shown, what="both deliveries shown")
    assert earlier["eventId"] == first and earlier["delivered"] and earlier["status"] == 200
    assert earlier["attempts"] == 2 and earlier["eventType"] == "io.zeroserve.deployment.status"
    assert latest["eventId"] == second and not latest["delivered"] and latest["status"] == 503
    assert latest["attempts"] == zeroserve.settings.webhook_delivery_attempts and latest["durationMs"] >= 0
    assert latest["at"] >= earlier["at"]
    listed = (await api.get("/v2/subscriptions")).json()["resources"][0]["lastDeliveries"]
    assert [d["eventId"] for d in listed] == [second, first]
    # Deleted with its subscription.
    assert (await api.delete(f"/v2/subscriptions/{subscription['id']}")).status_code == 200
    assert zeroserve.platform is not None
    assert await zeroserve.platform.store.deliveries.get("default", subscription["id"]) is None


async def test_a_delivery_gives_up_after_the_limit_and_logs_the_subscription_not_the_secret(
        zeroserve, api, receiver, caplog):
    caplog.set_level(logging.INFO, logger="zeroserve.webhooks")
    receiver.always_fail.add("/dead")
    subscription = await subscribe(api, f"{receiver.url}/dead", "deployment.status")
    event_id = await announce(zeroserve, "iris")

    await receiver.wait_for(lambda: deliveries("default", subscription["id"], "failed") == 1)
    assert len(receiver.at("/dead")) == zeroserve.settings.webhook_delivery_attempts
    # Every attempt but the last is counted as retried (the dashboard's webhook panel shows both).
    assert deliveries("default", subscription["id"], "retried") == zeroserve.settings.webhook_delivery_attempts - 1
    gave_up = [r.getMessage() for r in caplog.records if "gave up" in r.getMessage()]
    assert gave_up and subscription["id"] in gave_up[0] and event_id in gave_up[0] and "HTTP 503" in gave_up[0]
    assert subscription["secret"] not in caplog.text
    # Given up means acked: the next event is delivered (and failed) on its own, the first is not tried again.
    await announce(zeroserve, "iris-2")
    await receiver.wait_for(lambda: deliveries("default", subscription["id"], "failed") == 2)
    assert len(receiver.at("/dead")) == 2 * zeroserve.settings.webhook_delivery_attempts


async def test_a_receiver_that_does_not_answer_holds_back_no_other_subscription(zeroserve, api, receiver):
    receiver.hold.add("/stuck")
    await subscribe(api, f"{receiver.url}/stuck", "deployment.status")
    await subscribe(api, f"{receiver.url}/fine", "deployment.status")

    first = await announce(zeroserve, "dep-one")
    second = await announce(zeroserve, "dep-two")
    await receiver.wait_for(lambda: {r.json()["id"] for r in receiver.at("/fine")} == {first, second})
    assert receiver.held >= 1 and "/stuck" not in receiver.answered  # still waiting on the stuck one

    receiver.release.set()
    await receiver.wait_for(lambda: {r.json()["id"] for r in receiver.at("/stuck")} == {first, second})


async def test_a_delivery_that_outlasts_the_ack_wait_is_not_handed_out_twice(zeroserve, api, receiver):
    receiver.hold.add("/slow")
    subscription = await subscribe(api, f"{receiver.url}/slow", "deployment.status")
    await announce(zeroserve, "iris")
    await receiver.wait_for(lambda: receiver.held == 1)
    # Three ack waits: without the heartbeat JetStream would have redelivered the event by now.
    await asyncio.sleep(3 * zeroserve.settings.ack_wait_s)
    receiver.release.set()
    await receiver.wait_for(lambda: deliveries("default", subscription["id"], "delivered") == 1)
    assert len(receiver.at("/slow")) == 1


async def test_deployment_logs_are_delivered_to_log_subscribers(zeroserve, api, receiver):
    assert zeroserve.platform is not None
    await subscribe(api, f"{receiver.url}/logs", "deployment.log")
    await zeroserve.platform.logs.control("default", "iris", "hello from the control plane")
    await receiver.wait_for(lambda: bool(receiver.at("/logs")))
    event = receiver.at("/logs")[0].json()
    assert event["type"] == "io.zeroserve.deployment.log"
    assert event["data"]["message"] == "hello from the control plane"


async def test_subscriptions_and_events_of_one_group_are_invisible_to_another(zeroserve, receiver):
    token_a, token_b = await token_for(zeroserve, ["team-a"]), await token_for(zeroserve, ["team-b"])
    async with httpx.AsyncClient(base_url=zeroserve.url, headers={"Authorization": f"Bearer {token_a}"}) as a, \
            httpx.AsyncClient(base_url=zeroserve.url, headers={"Authorization": f"Bearer {token_b}"}) as b:
        mine = await subscribe(a, f"{receiver.url}/team-a", "deployment.status", group="team-a")

        in_b = {"AI-Resource-Group": "team-b"}
        assert (await b.get(f"/v2/subscriptions/{mine['id']}", headers=in_b)).status_code == 404
        assert (await b.delete(f"/v2/subscriptions/{mine['id']}", headers=in_b)).status_code == 404
        assert (await b.get("/v2/subscriptions", headers=in_b)).json()["count"] == 0
        # Naming group a does not help a token that does not cover it.
        assert (await b.get(f"/v2/subscriptions/{mine['id']}",
                            headers={"AI-Resource-Group": "team-a"})).status_code == 404

    other = await announce(zeroserve, "theirs", group="team-b")
    own = await announce(zeroserve, "ours", group="team-a")
    await receiver.wait_for(lambda: bool(receiver.at("/team-a")))
    assert [r.json()["id"] for r in receiver.at("/team-a")] == [own]
    assert other != own


async def test_subscriptions_with_a_bad_url_or_event_type_are_400_naming_the_field(api):
    cases = [
        ({"url": "ftp://example/hook", "eventTypes": ["deployment.status"]}, "body.url"),
        ({"url": "not a url", "eventTypes": ["deployment.status"]}, "body.url"),
        ({"url": "http://127.0.0.1/hook", "eventTypes": ["artifact.created"]}, "is sent to zeroserve, not by it"),
        ({"url": "http://127.0.0.1/hook", "eventTypes": ["model.exploded"]}, "is not an event type"),
        ({"url": "http://127.0.0.1/hook", "eventTypes": []}, "body.eventTypes"),
        ({"url": "http://127.0.0.1/hook"}, "body.eventTypes: Field required"),
        ({"url": "http://127.0.0.1:99999/hook", "eventTypes": ["deployment.status"]}, "body.url"),
    ]
    for body, expected in cases:
        response = await api.post("/v2/subscriptions", json=body)
        assert response.status_code == 400, (body, response.text)
        assert expected in response.json()["error"]["message"], (body, response.json())


async def test_subscriptions_need_a_token(zeroserve):
    async with httpx.AsyncClient(base_url=zeroserve.url) as http:
        assert (await http.get("/v2/subscriptions")).status_code == 401
        assert (await http.post("/v2/subscriptions", json={"url": "http://127.0.0.1/x",
                                                           "eventTypes": ["deployment.status"]})).status_code == 401


# -- where deliveries may go ----------------------------------------------------------------------------

# Each of these is refused by default; no test opens a connection to any address but 127.0.0.1.
NOT_PUBLIC = [
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254 is a private address"),
    ("http://10.0.0.1/hook", "10.0.0.1 is a private address"),
    ("https://192.168.1.10:8443/hook", "192.168.1.10 is a private address"),
    ("http://100.64.0.1/hook", "100.64.0.1 is a special-purpose address"),
    ("http://127.0.0.1:9/hook", "127.0.0.1 is a loopback address"),
    ("http://[::1]:9/hook", "::1 is a loopback address"),
    ("http://localhost:9/hook", "localhost resolves to "),
    ("http://2130706433:9/hook", "2130706433 resolves to 127.0.0.1, a loopback address"),
    ("http://127.1:9/hook", "127.1 resolves to 127.0.0.1, a loopback address"),
    ("http://0.0.0.0:9/hook", "0.0.0.0 is a wildcard address"),
    ("http://[::ffff:169.254.169.254]/hook", "a link-local address"),
    ("http://[64:ff9b::a9fe:a9fe]/hook", "a link-local address"),  # NAT64 of 169.254.169.254
    ("http://[2002:7f00:1::1]/hook", "a loopback address"),  # 6to4 of 127.0.0.1
    ("http://[fe80::1]/hook", "fe80::1 is a link-local address"),
    ("http://224.0.0.1/hook", "224.0.0.1 is a multicast address"),
]


async def refused(api: httpx.AsyncClient, url: str) -> str:
    """The message of the 400 that a subscription to ``url`` gets."""
    response = await api.post("/v2/subscriptions", json={"url": url, "eventTypes": ["deployment.status"]})
    assert response.status_code == 400, (url, response.text)
    error = response.json()["error"]
    assert error["code"] == "WebhookTargetNotAllowed", (url, error)
    assert error["message"].startswith("body.url: "), error
    return str(error["message"])


@pytest.mark.parametrize("allowed_networks", [None])
async def test_by_default_a_subscription_to_an_address_that_is_not_public_is_refused_naming_it(zeroserve, api):
    assert zeroserve.settings.webhook_allowed_networks == []
    for url, expected in NOT_PUBLIC:
        message = await refused(api, url)
        assert expected in message, (url, message)
        assert "ZEROSERVE_WEBHOOK_ALLOWED_NETWORKS" in message, "the refusal says how an operator allows it"
    assert (await api.get("/v2/subscriptions")).json() == {"count": 0, "resources": []}


async def test_an_allowed_network_opens_only_itself(zeroserve, api, receiver):
    assert [str(n) for n in zeroserve.settings.webhook_allowed_networks] == ["127.0.0.0/8"]
    await subscribe(api, f"{receiver.url}/ok", "deployment.status")
    for url, expected in NOT_PUBLIC:
        if "127.0.0.1" in expected or url.startswith(("http://127.", "http://localhost")):
            continue  # allowed here (localhost too, where it resolves to 127.0.0.1 alone)
        assert expected in await refused(api, url), url
    assert (await api.get("/v2/subscriptions")).json()["count"] == 1


@pytest.mark.parametrize("allowed_networks", [["127.0.0.0/8", "::1/128"]])
async def test_a_host_name_that_resolves_to_an_allowed_network_is_delivered_to(zeroserve, api, receiver):
    port = receiver.url.rsplit(":", 1)[1]
    subscription = await subscribe(api, f"http://localhost:{port}/by-name", "deployment.status")
    event_id = await announce(zeroserve, "iris")
    # localhost may resolve to ::1 first, where nothing listens: the next checked address is tried.
    await receiver.wait_for(lambda: bool(receiver.at("/by-name")))
    (request,) = receiver.at("/by-name")
    assert request.json()["id"] == event_id and request.headers["host"] == f"localhost:{port}"
    Webhook(subscription["secret"]).verify(request.body, request.headers)


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Answers for made-up host names, changeable by the test (as their owner could change them)."""
    answers: dict[str, list[str]] = {}
    real = targets.resolve

    async def resolve(host: str, port: int, timeout: float) -> list[Any]:
        if host in answers:
            return [ipaddress.ip_address(address) for address in answers[host]]
        return await real(host, port, timeout)

    monkeypatch.setattr(targets, "resolve", resolve)
    return answers


@pytest.mark.parametrize("allowed_networks", [None])
async def test_a_name_with_one_private_address_among_public_ones_is_refused(api, dns):
    dns["mixed.example"] = ["93.184.215.14", "10.0.0.7"]
    assert "mixed.example resolves to 10.0.0.7, a private address" in await refused(api, "https://mixed.example/hook")
    dns["public.example"] = ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]
    # Checked, not called: registration resolves the name and opens no connection.
    assert (await subscribe(api, "https://public.example/hook", "deployment.status"))["url"] == \
        "https://public.example/hook"


@pytest.mark.parametrize("allowed_networks", [None])
async def test_a_name_rebound_to_loopback_after_registration_gets_no_delivery(zeroserve, api, receiver, dns, caplog):
    caplog.set_level(logging.INFO, logger="zeroserve.webhooks")
    port = receiver.url.rsplit(":", 1)[1]
    dns["rebind.example"] = ["93.184.215.14"]  # public when the subscription is made
    subscription = await subscribe(api, f"http://rebind.example:{port}/rebound", "deployment.status")
    dns["rebind.example"] = ["127.0.0.1"]  # then its owner points it at the machine zeroserve runs on
    event_id = await announce(zeroserve, "iris")

    await receiver.wait_for(lambda: deliveries("default", subscription["id"], "failed") == 1)
    assert receiver.requests == [], "nothing reached the receiver on 127.0.0.1"
    gave_up = [r.getMessage() for r in caplog.records if "gave up" in r.getMessage()]
    assert len(gave_up) == 1 and subscription["id"] in gave_up[0] and event_id in gave_up[0]
    assert "after 1 attempts: WebhookTargetNotAllowed: rebind.example resolves to 127.0.0.1" in gave_up[0]
