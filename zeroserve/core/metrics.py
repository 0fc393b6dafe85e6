"""What zeroserve counts, for Prometheus (served at ``/metrics`` by the gateway).

Inference requests and their latency per deployment, cold starts and how long they took,
replicas per deployment, events handled, retried and dead-lettered per function, and the model
cache's bytes and evictions. The
metrics live in prometheus-client's default registry, next to its process metrics.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
broken_answers = Counter(
    "zeroserve_inference_broken_answers", "Answers a model server broke off after they had started",
    ["group", "deployment"],
)
cold_starts = Counter("zeroserve_cold_starts", "Requests that had to start a replica first", ["group", "deployment"])
cold_start_seconds = Histogram(
    "zeroserve_cold_start_seconds", "How long a request waited for a replica to start and be ready",
    ["group", "deployment"], buckets=_SECONDS,
)
replicas = Gauge("zeroserve_replicas", "Running replicas per deployment", ["group", "deployment"])
events_handled = Counter("zeroserve_events_handled", "Events a function handled successfully", ["function"])
events_retried = Counter("zeroserve_events_retried", "Failed attempts handed back for a retry", ["function"])
events_dead_lettered = Counter(
    "zeroserve_events_dead_lettered", "Events a function gave up on (sent to the dead letters)", ["function", "reason"]
)

model_cache_bytes = Gauge("zeroserve_model_cache_bytes", "Bytes of staged artifacts in the local model cache")
model_cache_evictions = Counter(
    "zeroserve_model_cache_evictions", "Artifacts evicted from the local model cache to make room for another"
)


def forget_deployment(group: str, deployment: str) -> None:
    """Drop a deleted deployment's replica gauge, so it does not report 0 replicas forever."""
    try:
        replicas.remove(group, deployment)
    except KeyError:
        pass
