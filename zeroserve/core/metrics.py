"""What zeroserve counts, for Prometheus (served at ``/metrics`` by the gateway).

Inference requests and their latency per deployment, cold starts, how long they took and where
that time went by phase, replicas per deployment, events published per type and handled, retried
and dead-lettered per function, outbound webhook deliveries by outcome, and the model cache's bytes
and evictions; ``manifests/grafana/zeroserve.json`` is a dashboard of them. The metrics live in
prometheus-client's default registry, next to its process metrics. ``traffic`` is the short
in-memory view of the same inference figures that the console charts (``core/traffic.py``).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from zeroserve.core.traffic import Traffic

# Latency buckets from a warm forward (a millisecond) to a slow cold start (tens of seconds).
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

inference_requests = Counter(
    "zeroserve_inference_requests", "Inference requests answered, by deployment and HTTP status",
    ["group", "deployment", "code"],
)
inference_seconds = Histogram(
    "zeroserve_inference_request_seconds", "Time to answer an inference request, cold starts included",
    ["group", "deployment"], buckets=_SECONDS,
)
# On a cluster: what KEDA scales a KServe Standard-mode deployment on (templates/modes.py).
requests_in_flight = Gauge(
    "zeroserve_inference_requests_in_flight", "Inference requests forwarded and not yet answered, by deployment",
    ["group", "deployment"],
)
broken_answers = Counter(
    "zeroserve_inference_broken_answers", "Answers a model server broke off after they had started",
    ["group", "deployment"],
)
cold_starts = Counter("zeroserve_cold_starts", "Requests that had to start a replica first", ["group", "deployment"])
cold_start_seconds = Histogram(
    "zeroserve_cold_start_seconds", "How long a request waited for a replica to start and be ready",
    ["group", "deployment"], buckets=_SECONDS,
)
# One observation per phase of each replica's cold start (queued, replica-start, model-load, ready, forward).
cold_start_phase_seconds = Histogram(
    "zeroserve_cold_start_phase_seconds", "Where a replica's cold start went, by phase",
    ["group", "deployment", "phase"], buckets=_SECONDS,
)
replicas = Gauge("zeroserve_replicas", "Running replicas per deployment", ["group", "deployment"])
events_handled = Counter("zeroserve_events_handled", "Events a function handled successfully", ["function"])
events_retried = Counter("zeroserve_events_retried", "Failed attempts handed back for a retry", ["function"])
events_dead_lettered = Counter(
    "zeroserve_events_dead_lettered", "Events a function gave up on (sent to the dead letters)", ["function", "reason"]
)
events_published = Counter("zeroserve_events_published", "Events published to the bus, by CloudEvent type", ["type"])
webhook_deliveries = Counter(
    "zeroserve_webhook_deliveries", "Outbound webhook delivery attempts, by outcome (delivered; retried: an attempt "
    "failed and another follows; failed: the last attempt failed, given up)", ["group", "subscription", "outcome"],
)

model_cache_bytes = Gauge("zeroserve_model_cache_bytes", "Bytes of staged artifacts in the local model cache")
model_cache_evictions = Counter(
    "zeroserve_model_cache_evictions", "Artifacts evicted from the local model cache to make room for another"
)


traffic = Traffic()


def forget_deployment(group: str, deployment: str) -> None:
    """Drop a deleted deployment's replica gauge, so it does not report 0 replicas forever, and its traffic."""
    traffic.forget(group, deployment)
    try:
        replicas.remove(group, deployment)
    except KeyError:
        pass
