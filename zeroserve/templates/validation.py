"""The check that an InferenceService is one the API server and KServe's admission webhook accept:
the v1beta1 CRD schema, closed to unknown fields, then what the schema cannot say (names, labels,
replica rules). The schema, ``schemas/inferenceservice-v1beta1.json``, is the ``schema.openAPIV3Schema``
of KServe v0.20.0's ``config/crd/full/serving.kserve.io_inferenceservices.yaml``
(``tests/data/reference/crds``), extracted unchanged as compact JSON; ``tests/test_templates.py``
fails if the two drift apart.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
from collections.abc import Callable, Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any

import jsonschema

from zeroserve.errors import InvalidConfiguration
from zeroserve.templates.fields import LABEL_VALUE_PATTERN
from zeroserve.templates.limits import MAX_REQUEST_BODY, REQUEST_TIMEOUT, RequestLimits, size_of, timeout_of
from zeroserve.templates.modes import AUTOSCALER_CLASS_ANNOTATION, DEPLOYMENT_MODE_ANNOTATION, STANDARD
from zeroserve.templates.scaling import IDLE_WINDOW, idle_window_of, idle_window_value

if TYPE_CHECKING:
    from zeroserve.templates.serving import ServingTemplate

SCHEMA_FILE = "schemas/inferenceservice-v1beta1.json"
_LABEL_VALUE = re.compile(LABEL_VALUE_PATTERN)
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# KServe's admission webhook is stricter than RFC 1123: an InferenceService name starts with a letter.
_AUTOSCALER_CLASSES = ("hpa", "external", "keda", "none")
_ISVC_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# zeroserve's own annotations, each with what reads it, and a template line that fills one from a parameter.
_OWN_ANNOTATIONS: dict[str, Callable[[object], object]] = {
    REQUEST_TIMEOUT: timeout_of, MAX_REQUEST_BODY: size_of, IDLE_WINDOW: idle_window_value}
_FILLED_BY_PARAMETER = re.compile(
    r"^\s*([\w./-]+)\s*:\s*[\"']?\{\{\s*inputs\.parameters\.([A-Za-z0-9_-]+)\s*\}\}[\"']?\s*$", re.MULTILINE)


def validate_inference_service(isvc: dict[str, Any]) -> None:
    """Refuse what the API server or KServe's admission webhook would refuse.

    The object is checked against the CRD schema, strictly: a field the schema does not know is an
    error here, where the API server would drop it with at most a warning. Then come the checks the
    schema cannot express: names and labels as Kubernetes and KServe require them, and KServe's
    replica and autoscaler rules.
    """
    error = _schema_error(isvc)
    if error is not None:
        where = _path(error.absolute_path)
        raise InvalidConfiguration(f"InferenceService {where}: {_shorten(error.message)}")
    if (isvc.get("apiVersion"), isvc.get("kind")) != ("serving.kserve.io/v1beta1", "InferenceService"):
        raise InvalidConfiguration(
            f"not a serving.kserve.io/v1beta1 InferenceService: {isvc.get('apiVersion')} {isvc.get('kind')}"
        )
    metadata = isvc.get("metadata")
    if not isinstance(metadata, dict):
        raise InvalidConfiguration("InferenceService has no metadata")
    _validate_metadata(metadata)
    RequestLimits.from_inference_service(isvc)  # the gateway's bounds read well, or say what is wrong
    idle_window_of(isvc)  # fixed or learned
    spec = isvc.get("spec")
    if not isinstance(spec, dict) or "predictor" not in spec:
        raise InvalidConfiguration("InferenceService spec.predictor is required")
    annotations = metadata.get("annotations") or {}
    _validate_autoscaler_class(annotations)
    for component in ("predictor", "transformer", "explainer"):
        if component in spec:
            _validate_replicas(component, spec[component])
            _validate_scaling(annotations, component, spec[component])


def check_parameter_values(template: ServingTemplate, values: Mapping[str, str | None]) -> None:
    """The values of the parameters that fill zeroserve's own annotations (request timeout, body limit,
    idle window), read as those annotations will be: a configuration that could never deploy is refused
    when it is made, not when its deployment renders."""
    for line in _FILLED_BY_PARAMETER.finditer(template.template.annotations):
        read = _OWN_ANNOTATIONS.get(line[1])
        if read is not None:
            try:
                read(values.get(line[2]))
            except InvalidConfiguration as refused:
                raise InvalidConfiguration(f"parameter {line[2]!r}: {refused.message}") from None


def _schema_error(isvc: dict[str, Any]) -> jsonschema.ValidationError | None:
    """The CRD schema's verdict on ``isvc``. The schema takes any object as metadata, so objects that
    differ only there (deployments of one template and configuration: their names and labels) share
    one verdict; a pass is remembered (a schema check costs about a millisecond, a burst has thousands)."""
    key = None
    if isinstance(isvc.get("metadata"), dict):
        with contextlib.suppress(TypeError, ValueError):  # not JSON (a date from YAML, say): checked each time
            key = json.dumps({name: value for name, value in isvc.items() if name != "metadata"}, sort_keys=True)
        if key is not None and key in _passed:
            return None
    error = jsonschema.exceptions.best_match(_validator().iter_errors(isvc))
    if error is None and key is not None:
        if len(_passed) >= PASSED:
            _passed.clear()
        _passed.add(key)
    return error


# The schema's passes remembered (each the JSON of an object without its metadata).
PASSED = 1024
_passed: set[str] = set()


def prepare() -> None:
    """Read the schema now rather than at the first check (about 40 ms): for callers that want that
    off their event loop (``asyncio.to_thread(prepare)``) once, and every check after on it."""
    _validator()


def prepared() -> bool:
    return _validator.cache_info().currsize > 0


@functools.cache
def _validator() -> jsonschema.Draft7Validator:
    # Read once, on first use: 640 kB of JSON that a process which never renders does not need.
    text = resources.files("zeroserve.templates").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    return jsonschema.Draft7Validator(_closed(json.loads(text)))


def _closed(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields refused, as ``kubectl --validate=strict`` does."""
    closed = {key: value for key, value in schema.items() if not key.startswith("x-kubernetes-")}
    if "properties" in schema:
        closed["properties"] = {name: _closed(child) for name, child in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            closed["additionalProperties"] = False
    if isinstance(schema.get("additionalProperties"), dict):
        closed["additionalProperties"] = _closed(schema["additionalProperties"])
    if isinstance(schema.get("items"), dict):
        closed["items"] = _closed(schema["items"])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in schema:
            closed[key] = [_closed(child) for child in schema[key]]
    return closed


def _validate_metadata(metadata: dict[str, Any]) -> None:
    name = metadata.get("name")
    if not isinstance(name, str) or len(name) > 63 or not _ISVC_NAME.match(name):
        raise InvalidConfiguration(
            f"InferenceService name {name!r} is invalid: KServe needs at most 63 lower-case letters, "
            "digits or '-', starting with a letter and ending with a letter or digit"
        )
    namespace = metadata.get("namespace")
    if namespace is not None and (
        not isinstance(namespace, str) or len(namespace) > 63 or not _DNS_LABEL.match(namespace)
    ):
        raise InvalidConfiguration(f"InferenceService namespace {namespace!r} is not an RFC 1123 label")
    for key, value in (metadata.get("labels") or {}).items():
        if not _valid_key(key):
            raise InvalidConfiguration(f"InferenceService label key {key!r} is invalid")
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            raise InvalidConfiguration(
                f"InferenceService label {key}={value!r} is invalid: a label value is a string of at most "
                "63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
            )
    for key, value in (metadata.get("annotations") or {}).items():
        if not _valid_key(key):
            raise InvalidConfiguration(f"InferenceService annotation key {key!r} is invalid")
        if not isinstance(value, str):
            raise InvalidConfiguration(
                f"InferenceService annotation {key} must be a string, not {value!r} (quote it)"
            )


def _valid_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return False
    return len(name) <= 63 and bool(_LABEL_NAME.match(name))


def _validate_replicas(component: str, spec: dict[str, Any]) -> None:
    # KServe's webhook rules (validateReplicas); maxReplicas 0 means "no upper bound".
    low, high = spec.get("minReplicas", 0), spec.get("maxReplicas", 0)
    if low < 0:
        raise InvalidConfiguration(f"InferenceService spec.{component}.minReplicas cannot be less than 0")
    if high < 0:
        raise InvalidConfiguration(f"InferenceService spec.{component}.maxReplicas cannot be less than 0")
    if high != 0 and low > high:
        raise InvalidConfiguration(
            f"InferenceService spec.{component}.minReplicas ({low}) "
            f"cannot be greater than maxReplicas ({high})"
        )


def _validate_autoscaler_class(annotations: dict[str, Any]) -> None:
    # KServe's webhook (validateInferenceServiceAutoscaler): "kpa" is Knative's, never named here.
    value = annotations.get(AUTOSCALER_CLASS_ANNOTATION)
    if value is not None and value not in _AUTOSCALER_CLASSES:
        raise InvalidConfiguration(
            f"InferenceService annotation {AUTOSCALER_CLASS_ANNOTATION}: {value!r} is not one of "
            f"{', '.join(_AUTOSCALER_CLASSES)}"
        )


def _validate_scaling(annotations: dict[str, Any], component: str, spec: dict[str, Any]) -> None:
    """KServe's webhook (validateAutoScalingCompExtension): each autoscaler takes its own metrics."""
    where = f"InferenceService spec.{component}"
    metric = spec.get("scaleMetric")
    if annotations.get(DEPLOYMENT_MODE_ANNOTATION) != STANDARD:  # Knative's autoscaler
        if spec.get("deploymentStrategy") is not None:
            raise InvalidConfiguration(f"{where}.deploymentStrategy is for Standard mode only")
        knative_hpa = annotations.get("autoscaling.knative.dev/class") == "hpa.autoscaling.knative.dev"
        allowed = ("cpu", "memory") if knative_hpa else ("concurrency", "rps")
        if (metric or allowed[0]) not in allowed:
            raise InvalidConfiguration(
                f"{where}.scaleMetric {metric!r}: this autoscaler of Knative mode scales on {' or '.join(allowed)}")
        return
    autoscaler = annotations.get(AUTOSCALER_CLASS_ANNOTATION, "hpa")
    metrics = (spec.get("autoScaling") or {}).get("metrics") or []
    if autoscaler == "hpa":
        if (metric or "cpu") not in ("cpu", "memory"):
            raise InvalidConfiguration(
                f"{where}.scaleMetric {metric!r}: an HPA (Standard mode) scales on cpu or memory")
        target = spec.get("scaleTarget")
        if (metric or "cpu") == "cpu" and target is not None and not 1 <= target <= 100:
            raise InvalidConfiguration(f"{where}.scaleTarget {target}: a CPU utilization is 1 to 100 (%)")
        if any(m.get("type") != "Resource" for m in metrics):
            raise InvalidConfiguration(f"{where}.autoScaling: an HPA takes Resource metrics only")
    elif autoscaler == "keda":
        if metric is not None:
            raise InvalidConfiguration(f"{where}.scaleMetric: KServe does not take scaleMetric with KEDA")
        for found in metrics:
            external = found.get("external") if found.get("type") == "External" else None
            if external is not None and (not (external.get("metric") or {}).get("query")
                                         or (external.get("target") or {}).get("value") is None):
                raise InvalidConfiguration(f"{where}.autoScaling: an External metric needs a query and a target value")


def _path(parts: Any) -> str:
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path or "(object)"


def _shorten(message: str, limit: int = 300) -> str:
    return message if len(message) <= limit else f"{message[: limit - 3]}..."
