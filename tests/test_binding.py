"""The CloudEvents NATS protocol binding: what goes on the wire and what is accepted from it."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sysconfig
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest
from cloudevents.http import CloudEvent

from zeroserve.core.binding import from_nats, to_nats
from zeroserve.errors import MalformedEvent
from zeroserve.events import (
    EVENT_TYPES,
    ArtifactBinding,
    ArtifactCreated,
    ArtifactStatus,
    ConfigurationCreated,
    DeploymentDeleted,
    DeploymentLog,
    DeploymentRequested,
    DeploymentStatus,
    DeploymentStopped,
    EventData,
    Label,
    ParameterBinding,
    Status,
    new_event,
    parse_data,
)

EXAMPLES: dict[str, EventData] = {
    "io.zeroserve.artifact.created": ArtifactCreated(
        id="iris-model",
        name="iris",
        url="file:///models/iris",
        scenario_id="demo",
        description="Iris classifier — sklearn",
        labels=[Label(key="team", value="ml")],
    ),
    "io.zeroserve.artifact.status": ArtifactStatus(
        id="iris-model", status="staged", url="file:///models/iris", local_path="/cache/iris-model"
    ),
    "io.zeroserve.configuration.created": ConfigurationCreated(
        id="c-1", name="iris on starter", executable_id="sklearn", scenario_id="model-serving",
        parameter_bindings=[ParameterBinding(key="resourcePlan", value="starter")],
        input_artifact_bindings=[ArtifactBinding(key="model", artifact_id="iris-model")],
    ),
    "io.zeroserve.deployment.requested": DeploymentRequested(
        id="iris",
        executable_id="sklearn",
        parameters={"workers": "2"},
        input_artifacts={"model": "iris-model"},
        ttl="2h",
    ),
    "io.zeroserve.deployment.stopped": DeploymentStopped(id="iris"),
    "io.zeroserve.deployment.deleted": DeploymentDeleted(id="iris"),
    "io.zeroserve.deployment.status": DeploymentStatus(
        id="iris",
        status=Status.DEAD,
        target_status="RUNNING",
        reason="ModelLoadFailed",
        message="model.joblib: no such file",
        running_replicas=0,
        min_replicas=0,
        max_replicas=2,
        resource_plan="starter",
    ),
    "io.zeroserve.deployment.log": DeploymentLog(
        id="iris",
        timestamp=datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        source="replica-1",
        stream="stderr",
        message='loading "model.joblib" 100%',
    ),
}


def binary_headers(**overrides: str | None) -> dict[str, str]:
    headers: dict[str, str | None] = {
        "ce-specversion": "1.0",
        "ce-id": "ev-1",
        "ce-source": "/test",
        "ce-type": "io.zeroserve.deployment.stopped",
        "ce-datacontenttype": "application/json",
    }
    headers.update(overrides)
    return {name: value for name, value in headers.items() if value is not None}


def test_every_event_type_has_a_binding_example() -> None:
    assert set(EXAMPLES) == set(EVENT_TYPES)


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_event_type_round_trips_in_binary_mode(event_type: str) -> None:
    event = new_event(EXAMPLES[event_type], source="/zeroserve/test", subject="iris", causationid="ev-0")
    headers, body = to_nats(event)

    assert headers["ce-type"] == event_type
    assert headers["ce-id"] == event["id"]
    assert headers["ce-datacontenttype"] == "application/json"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == event.data
    received = from_nats(headers, body)
    assert received == event
    assert parse_data(received) == EXAMPLES[event_type]


def test_every_attribute_becomes_a_ce_header() -> None:
    event = new_event(DeploymentStopped(id="iris"), source="/test", subject="iris", causationid="ev-0")
    event["dataschema"] = "https://example.com/events/io.zeroserve.deployment.stopped.json"
    headers, _ = to_nats(event)
    assert set(headers) == {
        "ce-specversion",
        "ce-id",
        "ce-source",
        "ce-type",
        "ce-time",
        "ce-subject",
        "ce-dataschema",
        "ce-datacontenttype",
        "ce-causationid",
        "Content-Type",
    }


def test_non_ascii_attributes_are_percent_encoded_and_round_trip() -> None:
    event = new_event(DeploymentStopped(id="iris"), source="/zeroserve/тест", subject="modèle ü 模型")
    headers, body = to_nats(event)

    for name in ("ce-source", "ce-subject"):
        assert headers[name].isascii() and "%" in headers[name]
    assert headers["ce-source"] == "/zeroserve/%D1%82%D0%B5%D1%81%D1%82"
    received = from_nats(headers, body)
    assert received["source"] == "/zeroserve/тест"
    assert received["subject"] == "modèle ü 模型"


def test_space_quote_and_percent_are_encoded_and_other_printable_ascii_is_not() -> None:
    event = new_event(DeploymentStopped(id="iris"), source="/a/b?x=1&y=(2)#z", subject='a b "c" 100%')
    headers, body = to_nats(event)
    assert headers["ce-subject"] == "a%20b%20%22c%22%20100%25"
    assert headers["ce-source"] == "/a/b?x=1&y=(2)#z"
    assert from_nats(headers, body)["subject"] == 'a b "c" 100%'


def test_control_characters_never_reach_the_header_line() -> None:
    event = new_event(DeploymentStopped(id="iris"), source="/test", subject="line1\r\nce-id: forged")
    headers, body = to_nats(event)
    assert headers["ce-subject"] == "line1%0D%0Ace-id:%20forged"
    assert from_nats(headers, body)["subject"] == "line1\r\nce-id: forged"


def test_lower_case_percent_escapes_from_other_senders_are_decoded() -> None:
    event = from_nats(binary_headers(**{"ce-subject": "mod%c3%a8le"}), b'{"id":"iris"}')
    assert event["subject"] == "modèle"


def test_header_that_is_not_utf8_after_decoding_is_rejected() -> None:
    with pytest.raises(MalformedEvent, match="ce-subject is not UTF-8"):
        from_nats(binary_headers(**{"ce-subject": "%FF%FE"}), b'{"id":"iris"}')


def test_binary_message_with_mixed_case_header_names_is_read() -> None:
    headers = {
        "CE-SpecVersion": "1.0",
        "Ce-Id": "ev-1",
        "ce-SOURCE": "/test",
        "Ce-Type": "io.zeroserve.deployment.stopped",
        "CONTENT-TYPE": "application/json",
        "Ce-CausationId": "ev-0",
    }
    event = from_nats(headers, b'{"id":"iris"}')
    assert event["id"] == "ev-1"
    assert event["source"] == "/test"
    assert event["causationid"] == "ev-0"
    assert event["datacontenttype"] == "application/json"
    assert parse_data(event) == DeploymentStopped(id="iris")


def test_structured_message_with_data_is_read() -> None:
    document = {
        "specversion": "1.0",
        "id": "ev-1",
        "source": "https://ci.example.com/pipelines/7",
        "type": "io.zeroserve.artifact.created",
        "subject": "modèle",
        "datacontenttype": "application/json",
        "causationid": "ev-0",
        "data": {"name": "iris", "url": "s3://models/iris"},
    }
    event = from_nats(
        {"Content-Type": "application/cloudevents+json; charset=utf-8"},
        json.dumps(document, ensure_ascii=False).encode(),
    )
    assert event["subject"] == "modèle"
    assert event["causationid"] == "ev-0"
    assert parse_data(event) == ArtifactCreated(name="iris", url="s3://models/iris")


def test_structured_message_with_data_base64_is_read() -> None:
    document = {
        "specversion": "1.0",
        "id": "ev-1",
        "source": "/test",
        "type": "com.example.blob",
        "datacontenttype": "application/octet-stream",
        "data_base64": base64.b64encode(b"\x00\xffmodel").decode(),
    }
    event = from_nats({"content-type": "application/cloudevents+json"}, json.dumps(document).encode())
    assert event.data == b"\x00\xffmodel"
    assert "data_base64" not in event


def test_structured_message_with_bad_base64_is_rejected() -> None:
    document = {"specversion": "1.0", "id": "ev-1", "source": "/s", "type": "t", "data_base64": "!!!"}
    with pytest.raises(MalformedEvent, match="data_base64 is not valid base64"):
        from_nats({"Content-Type": "application/cloudevents+json"}, json.dumps(document).encode())


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"[1, 2]"])
def test_structured_message_that_is_not_a_json_object_is_rejected(body: bytes) -> None:
    with pytest.raises(MalformedEvent, match="structured event is not"):
        from_nats({"Content-Type": "application/cloudevents+json"}, body)


def test_structured_batch_is_rejected() -> None:
    with pytest.raises(
        MalformedEvent, match="unsupported event format 'application/cloudevents-batch\\+json'"
    ):
        from_nats({"Content-Type": "application/cloudevents-batch+json"}, b"[]")


@pytest.mark.parametrize("missing", ["id", "source", "type"])
def test_binary_message_without_a_required_attribute_is_rejected(missing: str) -> None:
    with pytest.raises(MalformedEvent, match=f"missing required attribute '{missing}'"):
        from_nats(binary_headers(**{f"ce-{missing}": None}), b'{"id":"iris"}')


@pytest.mark.parametrize("missing", ["id", "source", "type", "specversion"])
def test_structured_message_without_a_required_attribute_is_rejected(missing: str) -> None:
    document = {"specversion": "1.0", "id": "ev-1", "source": "/s", "type": "t", "data": {}}
    del document[missing]
    with pytest.raises(MalformedEvent, match=f"missing required attribute '{missing}'"):
        from_nats({"Content-Type": "application/cloudevents+json"}, json.dumps(document).encode())


def test_empty_id_is_rejected() -> None:
    with pytest.raises(MalformedEvent, match="required attribute 'id' must be a non-empty string"):
        from_nats(binary_headers(**{"ce-id": ""}), b'{"id":"iris"}')


def test_structured_id_that_is_not_a_string_is_rejected() -> None:
    document = {"specversion": "1.0", "id": 7, "source": "/s", "type": "t", "data": {}}
    with pytest.raises(MalformedEvent, match="required attribute 'id' must be a non-empty string, not 7"):
        from_nats({"Content-Type": "application/cloudevents+json"}, json.dumps(document).encode())


def test_absurdly_nested_json_is_rejected_not_crashed_on() -> None:
    with pytest.raises(MalformedEvent, match="data is not valid JSON"):
        from_nats(binary_headers(), b"[" * 100_000)


def test_other_specversion_is_rejected() -> None:
    with pytest.raises(MalformedEvent, match="unsupported specversion '0.3'"):
        from_nats(binary_headers(**{"ce-specversion": "0.3"}), b'{"id":"iris"}')


@pytest.mark.parametrize("body", [b'{"id": "iris"', b"\xff\xfe{}", b"iris"])
def test_json_message_whose_body_is_not_json_is_rejected(body: bytes) -> None:
    with pytest.raises(MalformedEvent, match="data is not valid JSON"):
        from_nats(binary_headers(), body)


@pytest.mark.parametrize(
    "headers", [None, {}, {"Content-Type": "application/json"}, {"Nats-Msg-Id": "x", "id": "ev-1"}]
)
def test_message_that_is_not_a_cloudevent_is_rejected(headers: dict[str, str] | None) -> None:
    with pytest.raises(MalformedEvent, match="not a CloudEvent"):
        from_nats(headers, b'{"id":"iris"}')


def test_causationid_extension_round_trips() -> None:
    event = new_event(DeploymentStopped(id="iris"), source="/test", causationid="4f1c-ev")
    headers, body = to_nats(event)
    assert headers["ce-causationid"] == "4f1c-ev"
    assert from_nats(headers, body)["causationid"] == "4f1c-ev"


def test_event_without_time_is_not_given_one_on_reading() -> None:
    event = from_nats(binary_headers(), b'{"id":"iris"}')
    assert "time" not in event


def test_event_without_data_has_an_empty_payload() -> None:
    event = CloudEvent({"type": "com.example.ping", "source": "/test"})
    headers, body = to_nats(event)
    assert body == b""
    assert from_nats(headers, body).data is None


def test_binary_data_travels_as_raw_bytes() -> None:
    event = CloudEvent(
        {"type": "com.example.blob", "source": "/test", "datacontenttype": "application/octet-stream"},
        b"\x00\xff",
    )
    headers, body = to_nats(event)
    assert body == b"\x00\xff"
    assert headers["Content-Type"] == "application/octet-stream"
    assert from_nats(headers, body) == event


def test_attribute_name_that_cannot_be_a_header_is_refused() -> None:
    event = new_event(DeploymentStopped(id="iris"), source="/test")
    event["causation-id"] = "ev-0"
    with pytest.raises(MalformedEvent, match="invalid attribute name 'causation-id'"):
        to_nats(event)


@pytest.mark.parametrize("name", ["causationid\n", "evil\nnats-msg-id"])
def test_attribute_name_with_a_line_break_cannot_add_a_header(name: str) -> None:
    event = new_event(DeploymentStopped(id="iris"), source="/test")
    event[name] = "ev-0"
    with pytest.raises(MalformedEvent, match="invalid attribute name"):
        to_nats(event)


def test_datacontenttype_with_a_line_break_cannot_add_a_header() -> None:
    event = new_event(DeploymentStopped(id="iris"), source="/test")
    event["datacontenttype"] = "application/json\n"
    with pytest.raises(MalformedEvent, match="invalid datacontenttype"):
        to_nats(event)


# --- through a real nats-server ---------------------------------------------------------------------


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    server = Path(sysconfig.get_path("scripts")) / "nats-server"
    process = subprocess.Popen(
        [str(server), "-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ports_file = tmp_path / f"nats-server_{process.pid}.ports"
        for _ in range(500):
            if ports_file.exists() and ports_file.stat().st_size:
                break
            assert process.poll() is None, "nats-server exited"
            time.sleep(0.01)
        yield json.loads(ports_file.read_text())["nats"][0]
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
async def client(nats_url: str) -> AsyncIterator[nats.NATS]:
    connection = await nats.connect(nats_url)
    yield connection
    await connection.close()


async def test_event_survives_a_real_nats_server(client: nats.NATS) -> None:
    subscription = await client.subscribe("zeroserve.team-a.deployment.status")
    event = new_event(
        EXAMPLES["io.zeroserve.deployment.status"],
        source="/zeroserve/тест",
        subject='modèle "ü" 100%',
        causationid="ev-0",
    )
    headers, body = to_nats(event)
    await client.publish("zeroserve.team-a.deployment.status", body, headers=headers)
    message = await asyncio.wait_for(subscription.next_msg(), timeout=5)

    received = from_nats(message.headers, message.data)
    assert received == event
    assert parse_data(received) == EXAMPLES["io.zeroserve.deployment.status"]
