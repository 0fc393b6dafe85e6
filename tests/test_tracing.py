"""Traces and JSON logs as an operator sees them: one trace from an API call to the RUNNING status event
(the gateway's span, the event's publishing, the function continuing the event's trace, the status it
publishes), one from a cold inference request to the replica (the request's span, the activator's
phases, the forward, and the replica receiving the trace's ``traceparent``); a caller's trace
continued; with tracing off no trace context is invented; and ``zeroserve up`` writing JSON lines
that carry the deployment, the event and the trace."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import operator, until, with_templates
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from zeroserve.core import tracing
from zeroserve.core.logformat import JsonLineFormatter
from zeroserve.node import Node
from zeroserve.settings import Settings

DATA = Path(__file__).parent / "data"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Where the spans zeroserve ends in this process are kept, once ``tracing_on``; off again afterwards."""
    yield InMemorySpanExporter()
    tracing.shutdown()


def tracing_on(exporter: InMemorySpanExporter) -> None:
    """Tracing on, every span kept in ``exporter`` as it ends."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """The tests' custom template (one replica, no image) for the shipped one."""
    return with_templates(settings, tmp_path / "templates", DATA / "templates" / "custom.yaml")


def trace_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


def span_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.span_id:016x}"


def parent_id(span: ReadableSpan) -> str | None:
    return None if span.parent is None else f"{span.parent.span_id:016x}"


def named(spans: list[ReadableSpan], name: str, **attributes: object) -> ReadableSpan:
    found = [s for s in spans if s.name == name and all(s.attributes.get(k) == v for k, v in attributes.items())]
    assert len(found) == 1, f"{len(found)} spans {name} {attributes}; spans: {[s.name for s in spans]}"
    return found[0]


def traceparent_of(msg) -> tuple[str, str] | None:
    """The trace id and parent span id of a NATS message's event (its ``ce-traceparent``), if it has one."""
    value = (msg.headers or {}).get("ce-traceparent")
    if value is None:
        return None
    _, trace, parent, _ = value.split("-")
    return trace, parent


async def deploy_probe_by_api(api: httpx.AsyncClient, zeroserve: Node, id: str, headers: dict[str, str]) -> str:
    """The probe predictor registered, configured and deployed through the AI API: the deployment's id."""
    source = zeroserve.settings.data_dir / "sources" / id
    shutil.copytree(DATA / "predictors" / "probe", source)
    artifact = await api.post("/v2/lm/artifacts", json={
        "name": id, "kind": "model", "url": source.as_uri(), "scenarioId": "model-serving"})
    assert artifact.status_code == 201, artifact.text
    configuration = await api.post("/v2/lm/configurations", json={
        "name": id, "executableId": "custom", "scenarioId": "model-serving",
        "inputArtifactBindings": [{"key": "model", "artifactId": artifact.json()["id"]}]})
    assert configuration.status_code == 201, configuration.text
    created = await api.post("/v2/lm/deployments", json={"configurationId": configuration.json()["id"]},
                             headers=headers)
    assert created.status_code == 202, created.text
    return str(created.json()["id"])


async def test_one_trace_goes_from_the_api_call_to_the_running_status_event(zeroserve, api, listen, spans):
    statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
    requests = await listen(zeroserve, "zeroserve.default.deployment.requested")

    # Tracing off (the default): events go out as they were, no trace context invented.
    untraced = await deploy_probe_by_api(api, zeroserve, "untraced", {})
    await statuses.wait_for(lambda e: e["id"] == untraced and e["status"] == "RUNNING")
    assert [traceparent_of(m) for m in statuses.messages + requests.messages] == [None] * (
        len(statuses.messages) + len(requests.messages))
    assert spans.get_finished_spans() == ()

    tracing_on(spans)
    caller = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    deployment = await deploy_probe_by_api(api, zeroserve, "traced", caller)
    since = len(statuses.messages)
    await statuses.wait_for(lambda e: e["id"] == deployment and e["status"] == "RUNNING", since=since)
    running = next(m for m in statuses.messages[since:]
                   if json.loads(m.data)["id"] == deployment and json.loads(m.data)["status"] == "RUNNING")
    event_trace, event_parent = traceparent_of(running) or ("", "")
    assert event_trace == CALLER_TRACE  # the caller's trace, continued through the bus

    def trace() -> list[ReadableSpan]:
        found = [s for s in spans.get_finished_spans() if trace_id(s) == CALLER_TRACE]
        return found if any(s.name == "deployment_requested" for s in found) else []

    found = await until(trace, what="the function's span")
    api_call = named(found, "POST /v2/lm/deployments")
    assert api_call.kind == SpanKind.SERVER and parent_id(api_call) == CALLER_SPAN
    assert api_call.attributes["http.response.status_code"] == 202
    assert api_call.attributes["http.route"] == "/v2/lm/deployments"
    requested = named(found, "publish io.zeroserve.deployment.requested")
    assert requested.kind == SpanKind.PRODUCER and parent_id(requested) == span_id(api_call)
    function = named(found, "deployment_requested")
    assert function.kind == SpanKind.CONSUMER and parent_id(function) == span_id(requested)
    assert function.attributes["cloudevents.event_type"] == "io.zeroserve.deployment.requested"
    status = named(found, "publish io.zeroserve.deployment.status",
                   **{"cloudevents.event_id": running.headers["ce-id"]})
    assert parent_id(status) == span_id(function) and event_parent == span_id(status)
    # One tree: every span's parent is in the trace, but the first one's, which is the caller's.
    ids = {span_id(s) for s in found}
    assert [s.name for s in found if parent_id(s) not in ids] == ["POST /v2/lm/deployments"]


@pytest.mark.slow
async def test_one_trace_goes_from_a_cold_inference_request_to_the_replica(settings, listen, spans):
    from test_data_plane import deploy_probe

    tracing_on(spans)
    async with Node(settings) as zeroserve, operator(zeroserve) as client:
        url = await deploy_probe(zeroserve, listen)
        answer = await client.post(url, json={"echo": True})
        assert answer.status_code == 200, answer.text
        assert answer.headers["X-Cold-Start"] == "true"
        received = {name.lower(): value for name, value in answer.json()["headers"].items()}
        _, replica_trace, replica_parent, _ = received["traceparent"].split("-")

        def request_span() -> ReadableSpan | None:
            return next((s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER
                         and s.attributes.get("zeroserve.deployment") == "probe"), None)

        request = await until(request_span, what="the inference request's span")
    assert request.name == "POST /v2/inference/deployments/{deploymentId}/{path}"
    assert request.attributes["zeroserve.cold_start"] is True
    assert request.attributes["http.response.status_code"] == 200
    assert trace_id(request) == replica_trace  # the replica got the gateway's trace
    found = [s for s in spans.get_finished_spans() if trace_id(s) == replica_trace]
    forward = named(found, "forward")
    assert forward.kind == SpanKind.CLIENT and parent_id(forward) == span_id(request)
    assert span_id(forward) == replica_parent
    phases = [named(found, name) for name in ("queued", "replica-start", "model-load", "ready")]
    assert {parent_id(phase) for phase in phases} == {span_id(request)}
    # At their own times, one after another, inside the request and before the forward.
    assert request.start_time <= phases[0].start_time
    for before, after in zip(phases, phases[1:], strict=False):
        assert before.end_time <= after.start_time + 1_000  # ns of rounding
    assert phases[-1].end_time <= forward.start_time and forward.end_time <= request.end_time


def test_zeroserve_up_writes_json_lines_with_the_deployment_event_and_trace(tmp_path):
    env = {**os.environ, "ZEROSERVE_DATA_DIR": str(tmp_path / "data"), "ZEROSERVE_GATEWAY_PORT": "0",
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "ZEROSERVE_LOG_FORMAT": "json",
           "OTEL_TRACES_EXPORTER": "console", "NO_COLOR": "1"}
    stderr = (tmp_path / "stderr").open("w+")
    up = subprocess.Popen([sys.executable, "-m", "zeroserve.cli", "up"], env=env, stdout=subprocess.DEVNULL,
                          stderr=stderr, text=True)
    try:
        url_file = tmp_path / "data" / "gateway.url"
        deadline = time.monotonic() + 60
        while not url_file.exists() and up.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert url_file.exists(), (tmp_path / "stderr").read_text()
        credentials = json.loads((tmp_path / "data" / "credentials.json").read_text())
        with httpx.Client(base_url=url_file.read_text(), timeout=30) as client:
            token = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                                auth=(credentials["client_id"], credentials["client_secret"])).json()["access_token"]
            sent = client.post("/v2/events", headers={"Authorization": f"Bearer {token}",
                                                      "Content-Type": "application/cloudevents+json"}, json={
                "specversion": "1.0", "id": "ask-for-nothing", "source": "/tests", "type":
                "io.zeroserve.deployment.requested",
                "data": {"id": "nowhere", "executableId": "sklearn", "inputArtifacts": {"model": "missing"}}})
            assert sent.status_code == 202, sent.text
        deadline = time.monotonic() + 30
        while "dead-lettered" not in (tmp_path / "stderr").read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=30)
    lines = (tmp_path / "stderr").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert up.returncode == 0, lines
    assert all({"time", "level", "logger", "message"} <= set(record) for record in records)
    dead = next(r for r in records if r["message"] == "deployment default/nowhere is DEAD (ArtifactNotFound)")
    assert dead["deployment"] == "nowhere" and dead["event"] == "ask-for-nothing" and dead["level"] == "INFO"
    assert len(dead["trace_id"]) == 32 and len(dead["span_id"]) == 16


def test_a_json_line_carries_the_exception_with_its_traceback():
    try:
        raise ValueError("no such thing")
    except ValueError:
        record = logging.getLogger("zeroserve.test").makeRecord(
            "zeroserve.test", logging.ERROR, __file__, 1, "could not do it", (), sys.exc_info())
    line = json.loads(JsonLineFormatter().format(record))
    assert line["message"] == "could not do it" and line["level"] == "ERROR" and line["logger"] == "zeroserve.test"
    assert "Traceback" in line["exception"] and "ValueError: no such thing" in line["exception"]
    assert "deployment" not in line and "trace_id" not in line  # what a line is not about is left out


@pytest.mark.parametrize(("environment", "exporters"), [
    ({}, []),
    ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
    ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ["otlp", "console"]),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, ["otlp"]),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, []),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, []),
])
def test_tracing_is_on_only_when_the_standard_variables_ask(monkeypatch, environment, exporters):
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                 "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert Settings().tracing_exporters == exporters
