"""Traces: OpenTelemetry spans of what zeroserve does for a request, followed across the gateway, the
bus, the functions and the replicas.

Off unless the standard variables ask for it (``Settings.tracing_exporters``: ``OTEL_TRACES_EXPORTER``,
or an OTLP endpoint; ``OTEL_SDK_DISABLED`` wins): then ``tracer`` is None and nothing here makes a
span, imports OpenTelemetry's SDK or touches a header, so the inference path pays one comparison.
On, the gateway continues a caller's W3C ``traceparent`` (or starts a trace) with one span per
request and passes its context to the replica; an event published while a span is current carries
that context in the CloudEvents distributed-tracing extension (``traceparent``, ``tracestate``), and
a function's handling of the event continues it, so what the function publishes joins the trace.
docs/observability.md lists the spans and their attributes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cloudevents.http import CloudEvent
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from zeroserve.settings import Settings

# None: tracing is off. Read as ``tracing.tracer`` (a module attribute), never imported by name:
# ``configure`` and ``use`` replace it.
tracer: Tracer | None = None
_provider: TracerProvider | None = None

# The W3C trace context: HTTP headers, and the CloudEvents attributes of the distributed-tracing extension.
TRACE_ATTRIBUTES = ("traceparent", "tracestate")
TRACE_HEADERS = frozenset(name.encode() for name in TRACE_ATTRIBUTES)
SCOPE = "zeroserve"
# A span started in this (empty) context has no parent: a new trace.
_ROOT: Any = None


def configure(settings: Settings) -> None:
    """Tracing as the settings say: off, or spans exported by each exporter they name (``otlp``: OTLP
    over HTTP/protobuf, configured by the exporter's own ``OTEL_EXPORTER_OTLP_*`` variables;
    ``console``: JSON on standard output), in batches from a thread of their own."""
    exporters = settings.tracing_exporters
    if not exporters:
        use(None)
        return
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    # The SDK reads the rest of its OTEL_* variables itself (OTEL_TRACES_SAMPLER, OTEL_RESOURCE_ATTRIBUTES,
    # OTEL_BSP_*): the standard's meaning, not zeroserve's.
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: settings.otel_service_name}))
    for name in exporters:
        exporter: SpanExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        else:
            exporter = ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    use(provider)


def use(provider: TracerProvider | None) -> None:
    """Make spans with ``provider`` from now on (None: tracing off). The test's in-memory exporter
    comes in here; ``configure`` for everyone else."""
    global tracer, _provider, _ROOT
    _provider = provider
    tracer = None if provider is None else provider.get_tracer(SCOPE)
    if provider is not None and _ROOT is None:
        from opentelemetry.context import Context

        _ROOT = Context()


def shutdown() -> None:
    """Export what is still buffered, and stop tracing."""
    provider = _provider
    use(None)
    if provider is not None:
        provider.shutdown()


def span(name: str, **attributes: Any) -> contextlib.AbstractContextManager[Any]:
    """A span of work inside the current one, current while it lasts (nothing when tracing is off)."""
    if tracer is None:
        return contextlib.nullcontext()
    return tracer.start_as_current_span(name, attributes=_kept(attributes))


def record(name: str, started: float, ended: float, **attributes: Any) -> None:
    """A span of work that is over, inside the current one, from its ``time.monotonic()`` start and end:
    the activator's phases are known once a replica is ready."""
    if tracer is None or ended < started:
        return
    offset = time.time_ns() - time.monotonic_ns()
    done = tracer.start_span(name, attributes=_kept(attributes), start_time=offset + int(started * 1e9))
    done.end(end_time=offset + int(ended * 1e9))


# --- HTTP -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def serving(scope: MutableMapping[str, Any], route: str | None = None, **attributes: Any) -> Iterator[Span]:
    """The server span of one ASGI request, continuing the caller's ``traceparent`` (or a new trace);
    named by ``route``, or by the route routing found (``scope["route"]``) once it has."""
    assert tracer is not None
    from opentelemetry.trace import SpanKind

    carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
               if name in TRACE_HEADERS}
    method = scope["method"]
    attributes = {"http.request.method": method, "url.path": scope["path"], "url.scheme": scope.get("scheme", "http"),
                  "http.route": route, **attributes}
    with tracer.start_as_current_span(f"{method} {route or scope['path']}", context=_extract(carrier) if carrier
                                      else _ROOT, kind=SpanKind.SERVER, attributes=_kept(attributes)) as current:
        try:
            yield current
        finally:
            found = None if route else getattr(scope.get("route"), "path", None)
            if found:
                current.update_name(f"{method} {found}")
                current.set_attribute("http.route", found)


def answered(current: Span, status: int, **attributes: Any) -> None:
    """The status the request was answered with (and ``attributes``), on its server span; a 5xx marks
    it failed."""
    current.set_attributes({"http.response.status_code": status, **attributes})
    if status >= 500:
        from opentelemetry.trace import Status, StatusCode

        current.set_status(Status(StatusCode.ERROR))


@contextlib.contextmanager
def calling(host: str, port: int) -> Iterator[list[tuple[bytes, bytes]]]:
    """A client span around a forward to ``host:port``: the ``traceparent`` (and ``tracestate``)
    headers that carry it to the server, to send in place of the caller's."""
    assert tracer is not None
    from opentelemetry.trace import SpanKind

    with tracer.start_as_current_span("forward", kind=SpanKind.CLIENT, attributes={
            "server.address": host, "server.port": port}):
        carrier: dict[str, str] = {}
        _inject(carrier)
        yield [(name.encode(), value.encode("latin-1")) for name, value in carrier.items()]


def forwarded_headers(headers: Iterable[tuple[bytes, bytes]], trace: list[tuple[bytes, bytes]]) -> list[
        tuple[bytes, bytes]]:
    """``headers`` with the trace context of ``trace`` in place of the caller's."""
    return [(name, value) for name, value in headers if name not in TRACE_HEADERS] + trace


# --- Events -----------------------------------------------------------------------------------------


def publishing(event: CloudEvent, subject: str) -> contextlib.AbstractContextManager[Any]:
    """A producer span around publishing ``event``, when a span is current (what it was published for):
    the event carries the producer span's context in ``traceparent``/``tracestate``, unless it brought
    its own (the extension's context is the event's origin, which nobody on the way replaces)."""
    if tracer is None:
        return contextlib.nullcontext()
    from opentelemetry.trace import get_current_span

    if not get_current_span().get_span_context().is_valid:
        # Published on nobody's behalf (a log record, the watcher's view of a backend): no trace of its own.
        return contextlib.nullcontext()
    return _publishing(tracer, event, subject)


@contextlib.contextmanager
def _publishing(using: Tracer, event: CloudEvent, subject: str) -> Iterator[None]:
    from opentelemetry.trace import SpanKind

    with using.start_as_current_span(f"publish {event['type']}", kind=SpanKind.PRODUCER,
                                      attributes=_event_attributes(event, subject)):
        if event.get("traceparent") is None:
            carrier: dict[str, str] = {}
            _inject(carrier)
            for name, value in carrier.items():
                event[name] = value
        yield


def handling(event: CloudEvent, function: str, subject: str) -> contextlib.AbstractContextManager[Any]:
    """A function's span over its handling of ``event``, continuing the event's trace (a new trace when
    it carries none), so that what the function publishes meanwhile joins it."""
    if tracer is None:
        return contextlib.nullcontext()
    from opentelemetry.trace import SpanKind

    carrier = {name: str(event.get(name)) for name in TRACE_ATTRIBUTES if event.get(name) is not None}
    return tracer.start_as_current_span(function, context=_extract(carrier), kind=SpanKind.CONSUMER, attributes={
        "zeroserve.function": function, **_event_attributes(event, subject)})


def _event_attributes(event: CloudEvent, subject: str) -> dict[str, Any]:
    return _kept({"messaging.system": "nats", "messaging.destination.name": subject,
                  "cloudevents.event_id": event["id"], "cloudevents.event_type": event["type"],
                  "cloudevents.event_source": event["source"], "cloudevents.event_subject": event.get("subject")})


# --- Logs -------------------------------------------------------------------------------------------


def current_ids() -> tuple[str, str] | None:
    """The trace id and span id of the current span, as W3C writes them (None: none, or tracing off)."""
    if tracer is None:
        return None
    from opentelemetry.trace import get_current_span

    context = get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def _kept(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in attributes.items() if value is not None}


def _extract(carrier: Mapping[str, str]) -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract(carrier)


def _inject(carrier: dict[str, str]) -> None:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    TraceContextTextMapPropagator().inject(carrier)
