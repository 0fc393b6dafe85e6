"""The one CloudEvents codec of zeroserve: how an event is written on NATS and over HTTP, and read back.

The NATS protocol binding (the Python SDK has none) writes binary content mode, ``ce-*`` headers
percent-encoded as the HTTP binding says, and reads binary and structured mode. The HTTP binding
reads the three content modes the gateway accepts (binary, structured
``application/cloudevents+json`` and batch ``application/cloudevents-batch+json``, a JSON array of
structured events) and writes the structured JSON that webhook deliveries and the client send.
What an event must carry to be zeroserve's (its types, its data) is ``zeroserve.events``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from cloudevents.http import CloudEvent

from zeroserve.errors import MalformedEvent
from zeroserve.events import JSON, SPECVERSION

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


class BatchTooLarge(MalformedEvent):
    """A batch of more events than the reader takes at once."""

    reason = "PayloadTooLarge"


# --- NATS: binary mode written, binary and structured read ---------------------------------------

_CE = "ce-"
# Attribute names become header names; the spec allows lower-case letters and digits only.
_ATTRIBUTE_NAME = re.compile(r"[a-z0-9]+")
_REQUIRED = ("specversion", "id", "source", "type")
_MEDIA_TYPE = re.compile(r"[\x20-\x7e]+")


# The attributes zeroserve's own events carry, whose names need no check.
_KNOWN_NAMES = frozenset(("specversion", "id", "source", "type", "time", "datacontenttype", "dataschema", "subject",
                          "causationid", "traceparent", "tracestate"))


def to_nats(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """Headers and payload of a NATS message carrying ``event`` in binary content mode."""
    headers: dict[str, str] = {}
    for name, value in event.get_attributes().items():
        if name not in _KNOWN_NAMES and not _ATTRIBUTE_NAME.fullmatch(name):
            raise MalformedEvent(f"invalid attribute name {name!r}: lower-case letters and digits only")
        headers[_CE + name] = _percent_encode(value if type(value) is str else _attribute_text(value))
    content_type = event.get("datacontenttype")
    if content_type is not None:
        # Content-Type is an ordinary header with its own grammar (not percent-encoded); it lets
        # readers and NATS tools that know nothing of CloudEvents see what the payload is.
        if not isinstance(content_type, str) or not _MEDIA_TYPE.fullmatch(content_type):
            raise MalformedEvent(f"invalid datacontenttype {content_type!r}")
        headers["Content-Type"] = content_type
    return headers, _encode_data(event.get_data(), content_type)


def from_nats(headers: Mapping[str, str] | None, body: bytes) -> CloudEvent:
    """The CloudEvent in a NATS message (or an HTTP request), in structured or binary content mode."""
    # nats-py keeps header names as sent, and other clients send them in any case. One pass over the
    # headers: this runs for every event a function handles.
    attributes: dict[str, Any] = {}
    encoded: dict[str, str] = {}
    content_type: str | None = None
    for name, value in (headers or {}).items():
        lowered = name.lower()
        if lowered.startswith(_CE):
            encoded[lowered] = value
        elif lowered == "content-type":
            content_type = value
    if content_type is not None and content_type.strip().lower().startswith("application/cloudevents"):
        attributes, data = _read_structured(content_type, body)
    elif _CE + "specversion" in encoded:
        for name, value in encoded.items():
            if len(name) > len(_CE):
                attributes[name[len(_CE):]] = _percent_decode(name, value)
        # A sender that only set Content-Type still told us what the body is.
        if "datacontenttype" not in attributes and content_type is not None:
            attributes["datacontenttype"] = content_type
        data = _decode_data(body, attributes.get("datacontenttype"))
    else:
        raise MalformedEvent(
            f"not a CloudEvent: no ce-specversion header, Content-Type {content_type!r}, "
            f"headers {sorted({name.lower() for name in headers or {}})}"
        )
    return _event(attributes, data)


def _event(attributes: dict[str, Any], data: Any) -> CloudEvent:
    for name in _REQUIRED:
        value = attributes.get(name)
        if value is None:
            raise MalformedEvent(f"missing required attribute {name!r}")
        if not isinstance(value, str) or not value:
            raise MalformedEvent(f"required attribute {name!r} must be a non-empty string, not {value!r}")
    if attributes["specversion"] != SPECVERSION:
        raise MalformedEvent(f"unsupported specversion {attributes['specversion']!r}: only 1.0")

    event = CloudEvent(attributes, data)
    # The SDK stamps a missing time with the time of reading, which would pass for when it happened.
    if "time" not in attributes:
        del event["time"]
    return event


def _read_structured(content_type: str, body: bytes) -> tuple[dict[str, Any], Any]:
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/cloudevents+json":
        raise MalformedEvent(f"unsupported event format {media_type!r}: only application/cloudevents+json")
    try:
        document = json.loads(body)
    # UnicodeDecodeError and JSONDecodeError are ValueErrors; absurd nesting is a RecursionError.
    except (ValueError, RecursionError) as e:
        raise MalformedEvent(f"structured event is not valid JSON: {e}") from e
    if not isinstance(document, dict):
        raise MalformedEvent(f"structured event is not a JSON object but {type(document).__name__}")
    return _read_document(document)


def _read_document(document: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    if "data" in document and "data_base64" in document:
        raise MalformedEvent("structured event has both data and data_base64")
    data = document.pop("data", None)
    if "data_base64" in document:
        encoded = document.pop("data_base64")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, TypeError, ValueError) as e:
            raise MalformedEvent(f"data_base64 is not valid base64: {e}") from e
    return document, data


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return True
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type in (JSON, "text/json") or media_type.endswith("+json")


def _encode_data(data: Any, content_type: str | None) -> bytes:
    if data is None:
        return b""
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    if isinstance(data, str) and not _is_json(content_type):
        return data.encode()
    return _json(data)


def _decode_data(body: bytes, content_type: str | None) -> Any:
    if not body:
        return None
    if content_type is None:
        # Nothing says what the body is: JSON if it parses, otherwise opaque bytes.
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            return body
    if _is_json(content_type):
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as e:
            raise MalformedEvent(f"data is not valid JSON: {e}") from e
    return body


def _attribute_text(value: Any) -> str:
    # The canonical string forms of the CloudEvents type system.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)


# What percent-encoding leaves as it is: printable ASCII but space, '"' and '%'.
_UNSAFE = re.compile(r'[^!#$&-~]')


def _percent_encode(text: str) -> str:
    # As the HTTP binding says: space, '"', '%' and everything outside printable ASCII, as UTF-8
    # bytes. NATS headers could not carry CR/LF or non-ASCII text safely otherwise. Ids, types and
    # times have none of them: one search of the text, once per attribute of every event.
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(lambda char: "".join(f"%{byte:02X}" for byte in char[0].encode()), text)


def _percent_decode(name: str, text: str) -> str:
    if "%" not in text and text.isascii():  # nothing encoded: most attributes of most events
        return text
    # Lone surrogates survive encoding here so that the UTF-8 check below rejects them.
    raw = text.encode("utf-8", "surrogatepass")
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == ord("%") and _is_hex(raw[i + 1 : i + 3]):
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedEvent(f"header {name} is not UTF-8 after percent-decoding: {e}") from e


def _is_hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(byte in b"0123456789abcdefABCDEF" for byte in pair)


# --- HTTP: binary, structured and batch read, structured and batch written ----------------------------


def from_http(
    headers: Mapping[str, str], body: bytes, *, accept: Callable[[CloudEvent], None], max_batch: int,
) -> list[CloudEvent]:
    """The events of an HTTP request in any content mode, each passed to ``accept`` (which raises
    ``MalformedEvent`` for one it refuses); the first problem raises, naming the event in a batch."""
    lowered = {name.lower(): value for name, value in headers.items()}
    if lowered.get("content-type", "").split(";", 1)[0].strip().lower() != BATCH:
        event = from_nats(lowered, body)
        accept(event)
        return [event]
    try:
        documents = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise MalformedEvent(f"batch is not valid JSON: {error}") from None
    if not isinstance(documents, list):
        raise MalformedEvent(f"batch must be a JSON array of events, not {type(documents).__name__}")
    if not documents:
        raise MalformedEvent("batch is empty")
    if len(documents) > max_batch:
        raise BatchTooLarge(f"batch has {len(documents)} events; at most {max_batch} at once")
    events: list[CloudEvent] = []
    for index, document in enumerate(documents):
        try:
            if not isinstance(document, dict):
                raise MalformedEvent(f"not a JSON object but {type(document).__name__}")
            event = _event(*_read_document(dict(document)))
            accept(event)
        except MalformedEvent as error:
            name = document.get("id") if isinstance(document, dict) else None
            which = f"event {index}" + (f" (id {str(name)[:80]!r})" if name is not None else "")
            raise MalformedEvent(f"{which}: {error.message}") from None
        # An id twice is not refused (a description cannot say "each id once"): JetStream keeps the first,
        # and the answer says the second was a duplicate.
        events.append(event)
    return events


def to_structured(event: CloudEvent) -> bytes:
    """The event in the CloudEvents JSON format (structured content mode)."""
    return _json(_document(event))


def to_http(events: Sequence[CloudEvent]) -> tuple[str, bytes]:
    """Content type and body of a request carrying ``events``: one in structured mode, several as a batch."""
    if len(events) == 1:
        return STRUCTURED, to_structured(events[0])
    return BATCH, _json([_document(event) for event in events])


def _document(event: CloudEvent) -> dict[str, Any]:
    document: dict[str, Any] = {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in event.get_attributes().items()
    }
    data = event.get_data()
    if isinstance(data, bytes | bytearray):
        document["data_base64"] = base64.b64encode(bytes(data)).decode()
    elif data is not None:
        document["data"] = data
    return document


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
