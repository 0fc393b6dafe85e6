"""Resource groups are tenants: what one group does, sees or names never reaches another's.

Two ways in are tried, as a client of one group would try them. The live event stream of the API
(``GET /v2/lm/deployments/{id}/events``): a token for team-a, whatever group it names in the header,
the query or twice over, sees team-a's events only, while team-b's deployment of the same id has
events of its own at the same moment. And the bus: an event published under team-a's subject acts
in team-a only (a stop or delete of an id that exists only in team-b is dead-lettered in team-a
with the reason, and team-b's deployment is untouched), and a subject whose group is malformed is
dead-lettered, never acted on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from conftest import Listener, token_for, until
from models import train_iris_sklearn

from zeroserve.core.binding import to_nats
from zeroserve.core.dead_letters import FUNCTION_HEADER, MESSAGE_HEADER, REASON_HEADER, SUBJECT_HEADER
from zeroserve.events import (
    INVALID_GROUP,
    ArtifactCreated,
    DeploymentDeleted,
    DeploymentLog,
    DeploymentRequested,
    DeploymentStatus,
    DeploymentStopped,
    EventData,
    Status,
    new_event,
)
from zeroserve.node import Node
from zeroserve.settings import Settings

A, B = "team-a", "team-b"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # No replica ever starts here (minReplicas 0, no request): no fork server to start either.
    return settings.model_copy(update={"fork_server": False})


def group_client(zeroserve: Node, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=zeroserve.url, timeout=30, headers={"Authorization": f"Bearer {token}"})


async def publish(zeroserve: Node, data: EventData, group: str) -> str:
    assert zeroserve.platform is not None
    event = new_event(data, source="/tests", subject=getattr(data, "id", None))
    await zeroserve.platform.bus.publish(event, group)
    return str(event["id"])


async def publish_on(zeroserve: Node, subject: str, data: EventData) -> str:
    """An event published on any subject, as any NATS client can."""
    assert zeroserve.platform is not None
    event = new_event(data, source="/tests", subject=getattr(data, "id", None))
    headers, body = to_nats(event)
    await zeroserve.platform.bus.js.publish(subject, body, headers={**headers, "Nats-Msg-Id": event["id"]})
    return str(event["id"])


async def deployment(http: httpx.AsyncClient, group: str, id: str) -> dict[str, Any]:
    response = await http.get(f"/v2/lm/deployments/{id}", headers={"AI-Resource-Group": group})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def becomes(http: httpx.AsyncClient, group: str, id: str, status: str) -> dict[str, Any]:
    async def seen() -> dict[str, Any] | None:
        response = await http.get(f"/v2/lm/deployments/{id}", headers={"AI-Resource-Group": group})
        if response.status_code == 404:  # its request is not handled yet
            return None
        assert response.status_code == 200, response.text
        return dict(response.json()) if response.json()["status"] == status else None

    return dict(await until(seen, what=f"{group}/{id} becoming {status}"))


async def dead_deployment(zeroserve: Node, group: str, id: str, executable: str) -> None:
    """A deployment that exists in ``group`` and is DEAD: its executable is no serving template."""
    await publish(zeroserve, DeploymentRequested(id=id, executable_id=executable), group)


async def running_deployment(zeroserve: Node, group: str, id: str) -> None:
    """A RUNNING sklearn deployment (scaled to zero) in ``group``, of the group's own iris artifact."""
    await publish(zeroserve, DeploymentRequested(
        id=id, executable_id="sklearn", input_artifacts={"model": "iris"},
        parameters={"minReplicas": "0", "maxReplicas": "1"}), group)


def log_line(id: str, message: str) -> DeploymentLog:
    return DeploymentLog(id=id, timestamp=datetime.now(UTC), source="control-plane", message=message)


async def next_event(lines: AsyncIterator[str], timeout: float = 20) -> dict[str, Any]:
    """The next server-sent event of a stream, as {event, id, data}."""
    current: dict[str, Any] = {}

    async def collect() -> dict[str, Any]:
        async for line in lines:
            if not line:
                if "data" in current:
                    return current
                current.clear()
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                current[name] = json.loads(value.strip()) if name == "data" else value.strip()
        raise AssertionError(f"the stream ended; last: {current}")

    return await asyncio.wait_for(collect(), timeout)


async def test_the_event_stream_shows_a_token_only_its_own_groups_events_whatever_group_it_names(zeroserve):
    assert zeroserve.platform is not None
    # The same deployment id in both groups, each DEAD with its own message.
    await dead_deployment(zeroserve, A, "twin", "template-of-a")
    await dead_deployment(zeroserve, B, "twin", "template-of-b")
    await dead_deployment(zeroserve, B, "only-in-b", "template-of-b")
    async with group_client(zeroserve, await token_for(zeroserve, ["*"])) as operator:
        for group, id in ((A, "twin"), (B, "twin"), (B, "only-in-b")):
            await becomes(operator, group, id, "DEAD")

    # What a token for team-a may try; each is either refused, or a stream of team-a's events.
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("its own group", {"headers": {"AI-Resource-Group": A}}),
        ("no group header, team-b in the query", {"params": {"resourceGroup": B, "AI-Resource-Group": B}}),
        ("team-a, team-b in the query", {"headers": {"AI-Resource-Group": A},
                                         "params": {"resourceGroup": B, "group": B}}),
        ("the header twice, a then b", {"headers": [("AI-Resource-Group", A), ("AI-Resource-Group", B)]}),
        ("the header twice, b then a", {"headers": [("AI-Resource-Group", B), ("AI-Resource-Group", A)]}),
        ("team-b", {"headers": {"AI-Resource-Group": B}}),
    ]
    token = await token_for(zeroserve, [A])
    streamed: dict[str, list[dict[str, Any]]] = {}
    async with group_client(zeroserve, token) as team_a:
        for what, request in attempts:
            async with team_a.stream("GET", "/v2/lm/deployments/twin/events", **request) as stream:
                if stream.status_code != 200:
                    await stream.aread()
                    assert stream.status_code == 404, (what, stream.status_code, stream.text)
                    # The same answer as for a group that does not exist: nothing of team-b is told.
                    error = stream.json()["error"]
                    assert error["code"] == "NotFound" and error["message"] in (
                        f"resource group {B} not found", "resource group default not found"), (what, error)
                    continue
                lines = stream.aiter_lines()
                events = [await next_event(lines)]  # the current status: the stream is subscribed by now
                marker = f"end of {what}"
                # Both groups announce, team-b first: had the stream let team-b's through, they would come
                # before team-a's last one (one publisher, one connection: NATS keeps their order).
                await publish(zeroserve, DeploymentStatus(id="twin", status=Status.DEAD, message="b-status"), B)
                await publish(zeroserve, log_line("twin", "b-log"), B)
                await publish(zeroserve, log_line("twin", "a-log"), A)
                await publish(zeroserve, DeploymentStatus(id="twin", status=Status.DEAD, message=marker), A)
                while events[-1]["data"].get("message") != marker:
                    events.append(await next_event(lines))
                streamed[what] = events

        # A deployment of team-b's alone, asked for by id: as unknown as one that never existed.
        for headers in ({"AI-Resource-Group": A}, {"AI-Resource-Group": B}, {}):
            alone = await team_a.get("/v2/lm/deployments/only-in-b/events", headers=headers)
            assert alone.status_code == 404 and alone.json()["error"]["code"] == "NotFound", (headers, alone.text)
        # A group that is a NATS wildcard or crosses a subject token is not a group: 400 before any subscription.
        for name in ("*", ">", "team-*", "team-a.>", "team-b.deployment"):
            wild = await team_a.get("/v2/lm/deployments/twin/events", headers={"AI-Resource-Group": name})
            assert wild.status_code == 400 and wild.json()["error"]["code"] == "InvalidResourceGroup", (name, wild.text)

    assert "its own group" in streamed and "team-b" not in streamed, "team-a's stream opens; team-b's does not"
    for what, events in streamed.items():
        first, rest = events[0], events[1:]
        # The record the stream starts from is team-a's (its message names team-a's executable).
        assert "template-of-a" in first["data"]["message"], (what, first)
        messages = [event["data"].get("message") for event in rest]
        assert messages == ["a-log", f"end of {what}"], (what, events)
        assert not any("template-of-b" in json.dumps(event) for event in events), (what, events)


def dead_letters(listener: Listener) -> list[dict[str, str]]:
    return [dict(m.headers or {}, subject=m.subject) for m in listener.messages]


async def staged(zeroserve: Node, group: str, id: str) -> bool:
    assert zeroserve.platform is not None
    artifact = await zeroserve.platform.store.artifacts.get(group, id)
    return artifact is not None and artifact.status == "staged"


async def test_an_event_on_one_groups_subject_acts_in_that_group_only(zeroserve, listen):
    assert zeroserve.platform is not None
    everything = await listen(zeroserve, "zeroserve.>")
    model = train_iris_sklearn(zeroserve.settings.data_dir / "sources" / "iris")
    for group in (A, B):
        await publish(zeroserve, ArtifactCreated(id="iris", name="iris", url=model.as_uri()), group)
    async with group_client(zeroserve, await token_for(zeroserve, ["*"])) as operator:
        for group in (A, B):
            await until(lambda group=group: staged(zeroserve, group, "iris"), what=f"iris staged in {group}")
        await running_deployment(zeroserve, A, "twin")
        await running_deployment(zeroserve, B, "twin")
        await running_deployment(zeroserve, B, "bee-only")
        await dead_deployment(zeroserve, B, "bee-dead", "no-such-template")
        for group, id, status in ((A, "twin", "RUNNING"), (B, "twin", "RUNNING"), (B, "bee-only", "RUNNING"),
                                  (B, "bee-dead", "DEAD")):
            await becomes(operator, group, id, status)
        before = {id: await deployment(operator, B, id) for id in ("twin", "bee-only", "bee-dead")}
        dead = await listen(zeroserve, "zeroserve.*.deadletter.>")

        # team-a stops its own twin, and names team-b's deployments as if they were its own.
        stray = {
            await publish(zeroserve, DeploymentStopped(id="twin"), A): "stop of a's twin",
            await publish(zeroserve, DeploymentStopped(id="bee-only"), A): "stop of b's bee-only in a",
            await publish(zeroserve, DeploymentDeleted(id="bee-dead"), A): "delete of b's bee-dead in a",
            # A group that is not one (upper case, underscore): dead-lettered, whatever it resembles.
            await publish_on(zeroserve, "zeroserve.Team-B.deployment.stopped",
                             DeploymentStopped(id="bee-only")): "stop under Team-B",
            await publish_on(zeroserve, "zeroserve.team_b.deployment.deleted",
                             DeploymentDeleted(id="bee-dead")): "delete under team_b",
        }
        stopped = await becomes(operator, A, "twin", "STOPPED")
        await until(lambda: len(dead.messages) >= 4, what="four dead letters")
        await asyncio.sleep(0.5)  # room for anything else those events might (wrongly) cause

        letters = {(d["ce-id"], d["subject"]): d for d in dead_letters(dead)}
        by_event = {stray[event_id]: (subject, d) for (event_id, subject), d in letters.items()}
        assert set(by_event) == {"stop of b's bee-only in a", "delete of b's bee-dead in a", "stop under Team-B",
                                 "delete under team_b"}, letters
        for what, function in (("stop of b's bee-only in a", "deployment_stopped"),
                               ("delete of b's bee-dead in a", "deployment_deleted")):
            subject, letter = by_event[what]
            assert subject == f"zeroserve.{A}.deadletter.{function}", (what, subject)
            assert letter[REASON_HEADER] == "DeploymentNotFound" and letter[FUNCTION_HEADER] == function
            assert f"in resource group {A}" in letter[MESSAGE_HEADER], letter
        for what, function, sent in (("stop under Team-B", "deployment_stopped", "zeroserve.Team-B.deployment.stopped"),
                                     ("delete under team_b", "deployment_deleted",
                                      "zeroserve.team_b.deployment.deleted")):
            subject, letter = by_event[what]
            assert subject == f"zeroserve.{INVALID_GROUP}.deadletter.{function}", (what, subject)
            assert letter[REASON_HEADER] == "MalformedEvent" and letter[SUBJECT_HEADER] == sent, letter
            assert sent.split(".")[1] in letter[MESSAGE_HEADER], letter

        # team-b's deployments are as they were; team-a's twin stopped.
        after = {id: await deployment(operator, B, id) for id in ("twin", "bee-only", "bee-dead")}
        assert after == before
        assert stopped["id"] == "twin" and stopped["status"] == "STOPPED"
        b_logs = (await operator.get("/v2/lm/deployments/twin/logs", headers={"AI-Resource-Group": B})).json()
        a_logs = (await operator.get("/v2/lm/deployments/twin/logs", headers={"AI-Resource-Group": A})).json()
        assert any("stopped" in line["msg"] for line in a_logs["data"]["result"])
        assert not any("stopped" in line["msg"] for line in b_logs["data"]["result"]), b_logs

    # What those events caused was published under team-a's subjects only: the statuses of a's twin (each
    # carries the id of the event that caused it), and the dead letters above.
    caused = [m.subject for m in everything.messages if (m.headers or {}).get("ce-causationid") in stray]
    assert f"zeroserve.{A}.deployment.status" in caused, caused
    assert all(subject.startswith(f"zeroserve.{A}.") for subject in caused), caused
    b_statuses = [json.loads(m.data) for m in everything.messages if m.subject == f"zeroserve.{B}.deployment.status"]
    assert b_statuses, "team-b's own statuses were seen (the listener works)"
    assert not any(s["status"] in ("STOPPING", "STOPPED") or s.get("targetStatus") == "DELETED" for s in b_statuses)
