"""Bad input on the bus: whatever arrives, the decoder and the event models answer with
``MalformedEvent`` (which the runner dead-letters with the reason), never another exception,
and what zeroserve writes it reads back unchanged. Property tests with hypothesis.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zeroserve.core.binding import from_nats, to_nats
from zeroserve.errors import MalformedEvent
from zeroserve.events import (
    DEPLOYMENT_ID_PATTERN,
    EVENT_TYPES,
    ArtifactCreated,
    DeploymentRequested,
    new_event,
    parse_data,
)

# Headers as any NATS client may send them: any name, any text (nats-py keeps the case).
header_names = st.one_of(
    st.sampled_from(["ce-specversion", "ce-id", "ce-source", "ce-type", "ce-time", "ce-subject",
                     "ce-datacontenttype", "Content-Type", "CE-ID", "ce-", "ce-causationid"]),
    st.text(min_size=1, max_size=20),
)
header_values = st.one_of(
    st.sampled_from(["1.0", "0.3", "", "application/json", "application/cloudevents+json", "text/plain",
                     "io.zeroserve.deployment.requested", "%", "%G1", "%C3%28", "%ED%A0%80"]),
    st.text(max_size=40),
)
bodies = st.one_of(
    st.binary(max_size=200),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                 lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children,
                                                                                   max_size=4),
                 max_leaves=12).map(lambda value: json.dumps(value).encode()),
    st.just(b"[" * 5000),  # deeper than json.loads goes
)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(headers=st.dictionaries(header_names, header_values, max_size=8), body=bodies)
def test_any_message_decodes_to_an_event_or_is_refused_as_malformed(headers: dict[str, str], body: bytes) -> None:
    try:
        event = from_nats(headers, body)
    except MalformedEvent as refused:
        assert str(refused)  # the reason the dead letter will carry
        return
    for name in ("specversion", "id", "source", "type"):
        assert isinstance(event[name], str) and event[name]
    try:
        parse_data(event)
    except MalformedEvent as refused:
        assert str(refused)


@FAST
@given(event_type=st.sampled_from(sorted(EVENT_TYPES)), data=bodies)
def test_the_data_of_every_event_type_is_validated_or_refused_with_the_field(event_type: str, data: bytes) -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "x1", "ce-source": "/fuzz", "ce-type": event_type,
               "Content-Type": "application/json"}
    try:
        parsed = parse_data(from_nats(headers, data))
    except MalformedEvent as refused:
        assert event_type in str(refused) or "JSON" in str(refused)
        return
    assert type(parsed) is EVENT_TYPES[event_type]


printable_ids = st.from_regex(DEPLOYMENT_ID_PATTERN, fullmatch=True)


@FAST
@given(
    id=printable_ids,
    subject=st.text(max_size=40).filter(lambda text: "\x00" not in text),
    cause=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40),
    parameters=st.dictionaries(st.from_regex(r"\A[A-Za-z][A-Za-z0-9]{0,10}\Z"), st.text(max_size=20), max_size=4),
)
def test_what_zeroserve_writes_it_reads_back_unchanged(id: str, subject: str, cause: str,
                                                        parameters: dict[str, str]) -> None:
    data = DeploymentRequested(id=id, executable_id="sklearn", parameters=parameters, input_artifacts={"model": id})
    event = new_event(data, source="/fuzz", subject=subject or None, causationid=cause)
    headers, body = to_nats(event)
    assert all(value.isascii() and "\n" not in value and "\r" not in value for value in headers.values())
    received = from_nats(headers, body)
    assert received.get_attributes() == event.get_attributes()
    assert parse_data(received) == data


@FAST
@given(url=st.text(max_size=60), name=st.text(max_size=30))
def test_an_artifact_event_with_any_url_or_name_is_an_event_or_malformed(url: str, name: str) -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "a1", "ce-source": "/fuzz",
               "ce-type": ArtifactCreated.event_type, "Content-Type": "application/json"}
    try:
        parse_data(from_nats(headers, json.dumps({"url": url, "name": name}).encode()))
    except MalformedEvent as refused:
        assert "data." in str(refused)  # names the field
