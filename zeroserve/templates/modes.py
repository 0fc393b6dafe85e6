"""KServe's two deployment modes, chosen per deployment by the ``serving.kserve.io/deploymentMode``
annotation (the built-in templates bind it to their ``deploymentMode`` parameter), and what each asks
of the InferenceService's autoscaling.

Knative (the default here): a Knative Service per InferenceService, whose activator holds requests
while a replica starts from zero. Standard (KServe's own default, formerly RawDeployment): a plain
Deployment and Service, scaled by an HPA or by KEDA; KServe has no activator there, and an HPA never
goes below one replica. So a Standard deployment that may scale to zero is scaled by KEDA on
zeroserve's own gateway metrics, read from the Prometheus named by
``settings.kserve_prometheus_url``: one trigger on the requests in flight (per replica, the
template's ``scaleTarget``, as Knative's concurrency target) and one that keeps a replica while any
request came within the idle window, so that KEDA starts one from zero. Without that Prometheus,
Standard mode with ``minReplicas: 0`` is refused, not rendered into an object that would keep a
replica running anyway.
"""

from __future__ import annotations

from typing import Any

from zeroserve.errors import InvalidConfiguration
from zeroserve.settings import Settings

DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
AUTOSCALER_CLASS_ANNOTATION = "serving.kserve.io/autoscalerClass"
KEDA = "keda"
KNATIVE, STANDARD = "Knative", "Standard"
# KServe >= 0.16 reads the old names as the new ones (constants.ParseDeploymentMode); zeroserve
# writes the new ones.
MODES = {KNATIVE: KNATIVE, "Serverless": KNATIVE, STANDARD: STANDARD, "RawDeployment": STANDARD}
# What the gateway exports (core/metrics.py), as Prometheus names them.
IN_FLIGHT_METRIC = "zeroserve_inference_requests_in_flight"
REQUESTS_METRIC = "zeroserve_inference_requests_total"
# Prometheus needs two scrapes inside a window to see an increase.
_SHORTEST_WINDOW_S = 60
_KNATIVE_METRICS = ("concurrency", "rps")
_HPA_METRICS = ("cpu", "memory")


def scaled_by_keda(isvc: dict[str, Any] | None) -> bool:
    """Whether KEDA scales this InferenceService (Standard mode): no activator holds a request at zero."""
    annotations = ((isvc or {}).get("metadata") or {}).get("annotations") or {}
    return bool(annotations.get(AUTOSCALER_CLASS_ANNOTATION) == KEDA)


def mode_of(annotations: dict[str, Any], template: str) -> str:
    """The deployment mode the annotations ask for (Knative when they name none), by its current name."""
    given = annotations.get(DEPLOYMENT_MODE_ANNOTATION)
    if given in (None, ""):
        return KNATIVE
    mode = MODES.get(given) if isinstance(given, str) else None
    if mode is None:
        raise InvalidConfiguration(
            f"serving template {template!r}: deploymentMode {given!r} is not a KServe deployment mode; "
            f"use {KNATIVE} (scale to zero through Knative) or {STANDARD} (a plain Deployment)"
        )
    return mode


def apply_mode(
    template: str, annotations: dict[str, Any], predictor: dict[str, Any], *, group: str, deployment_id: str,
    settings: Settings,
) -> str:
    """Set the mode annotation and, for Standard, the autoscaler KServe can run there; returns the mode."""
    mode = mode_of(annotations, template)
    annotations[DEPLOYMENT_MODE_ANNOTATION] = mode
    if mode == STANDARD:
        _standard(template, annotations, predictor, group=group, deployment_id=deployment_id, settings=settings)
    return mode


def _standard(
    template: str, annotations: dict[str, Any], predictor: dict[str, Any], *, group: str, deployment_id: str,
    settings: Settings,
) -> None:
    canary = predictor.get("canaryTrafficPercent")
    if canary not in (None, 100):
        raise InvalidConfiguration(
            f"serving template {template!r}: canaryTrafficPercent {canary} needs Knative mode; a Standard "
            "deployment rolls an update out as a Deployment does (set canaryTrafficPercent to 100)"
        )
    predictor.pop("canaryTrafficPercent", None)
    low = predictor.get("minReplicas", 0)
    metric = predictor.get("scaleMetric")
    if metric in _HPA_METRICS and low == 0:
        raise InvalidConfiguration(
            f"serving template {template!r}: scaleMetric {metric} in Standard mode means KServe's HPA, which keeps "
            "at least one replica; set minReplicas to 1 or more, or leave scaleMetric out to scale on requests"
        )
    if metric in _HPA_METRICS or settings.kserve_prometheus_url is None:
        if low == 0:
            raise InvalidConfiguration(
                f"serving template {template!r}: in Standard mode KServe scales to zero only through KEDA "
                "with a metric source, and none is set (ZEROSERVE_KSERVE_PROMETHEUS_URL, the Prometheus that "
                "scrapes zeroserve's gateway); set minReplicas to 1 or more, or use Knative mode"
            )
        annotations[AUTOSCALER_CLASS_ANNOTATION] = "hpa"
        if metric not in _HPA_METRICS:
            # Knative's metrics mean nothing to an HPA: KServe's default, CPU at 80% utilization.
            predictor["scaleMetric"] = "cpu"
            predictor.pop("scaleTarget", None)
            predictor.pop("scaleMetricType", None)
        return
    if metric is not None and metric not in _KNATIVE_METRICS:
        raise InvalidConfiguration(f"serving template {template!r}: scaleMetric {metric!r} is not one KEDA reads")
    annotations[AUTOSCALER_CLASS_ANNOTATION] = KEDA
    predictor.pop("scaleMetric", None)  # KServe refuses scaleMetric with KEDA
    predictor.pop("scaleMetricType", None)
    target = predictor.get("scaleTarget", 1)
    # A template that writes its own KEDA metrics keeps them (and what they can or cannot do).
    predictor.setdefault("autoScaling", {"metrics": _keda_metrics(group, deployment_id, metric, target, settings)})


def _keda_metrics(
    group: str, deployment_id: str, metric: str | None, target: Any, settings: Settings,
) -> list[dict[str, Any]]:
    """Two Prometheus triggers on the gateway's metrics of this one deployment."""
    assert settings.kserve_prometheus_url is not None
    selector = f'{{group="{group}",deployment="{deployment_id}"}}'
    window = max(int(settings.idle_window_s), _SHORTEST_WINDOW_S)
    load = (f"sum(rate({REQUESTS_METRIC}{selector}[{_SHORTEST_WINDOW_S}s]))" if metric == "rps"
            else f"sum({IN_FLIGHT_METRIC}{selector})")
    queries = (
        # Replicas = ceil(load / target), as Knative reads its concurrency (or rps) target.
        (load, str(target)),
        # One replica while any request came within the idle window (answered or refused while at
        # zero): the trigger that makes KEDA start a replica from zero, and stop it once idle.
        (f"clamp_max(sum(increase({REQUESTS_METRIC}{selector}[{window}s])), 1)", "1"),
    )
    return [
        {"type": "External", "external": {
            "metric": {"backend": "prometheus", "serverAddress": settings.kserve_prometheus_url, "query": query},
            "target": {"type": "Value", "value": value},
        }}
        for query, value in queries
    ]
