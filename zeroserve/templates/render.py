"""A serving template rendered into the KServe InferenceService of one deployment: the
configuration's values bound to the template's inputs and filled into its placeholders, the
resource plan its ``ai.sap.com/resourcePlan`` label names applied (CPU, memory, GPUs, GPU node
selector and toleration), the deployment mode the annotations choose (Knative unless they say
Standard, ``modes.py``), and the result validated, so that both backends receive the same valid
object as a plain dict.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import yaml

from zeroserve.errors import InvalidConfiguration
from zeroserve.settings import Settings
from zeroserve.templates.modes import apply_mode
from zeroserve.templates.placeholders import Filling, Marked, compose
from zeroserve.templates.plans import DEFAULT_PLAN, PLAN_LABEL, ResourcePlan
from zeroserve.templates.serving import ServingTemplate
from zeroserve.templates.validation import check_parameter_values, validate_inference_service

DEPLOYMENT_LABEL = "zeroserve.io/deployment-id"
GROUP_LABEL = "zeroserve.io/resource-group"
GPU_RESOURCE = "nvidia.com/gpu"
_FRAMEWORKS = (
    "sklearn", "xgboost", "lightgbm", "tensorflow", "pytorch",
    "triton", "onnx", "pmml", "paddle", "huggingface",
)


def _fill(
    template: ServingTemplate, part: str, values: Mapping[tuple[str, str], str], *, typed: bool
) -> dict[str, Any]:
    try:
        marked, node = _parsed(template.template.parts()[part])
        if node is None:
            return {}
        loader = yaml.SafeLoader("")
        try:
            result = loader.construct_document(Filling(marked, values, typed).fill(node))
        finally:
            loader.dispose()
    except (yaml.YAMLError, ValueError) as error:
        raise InvalidConfiguration(
            f"serving template {template.name!r}: cannot fill its {part}: {error}"
        ) from error
    if not isinstance(result, dict):
        raise InvalidConfiguration(f"serving template {template.name!r}: its {part} must be a mapping")
    return result


@functools.lru_cache(maxsize=256)
def _parsed(text: str) -> tuple[Marked, yaml.Node | None]:
    """A template part, marked and parsed once: a burst of deployments of one template parses it once,
    not once each. Filling builds new nodes and leaves this tree as it is, so it can be shared."""
    marked = Marked.of(text)
    return marked, compose(marked)


def render(
    template: ServingTemplate,
    *,
    deployment_id: str,
    group: str,
    parameters: dict[str, str],
    artifacts: dict[str, str],
    plans: dict[str, ResourcePlan],
    settings: Settings,
) -> dict[str, Any]:
    """The InferenceService for one deployment, checked against the CRD schema.

    ``parameters`` binds parameter names to values, ``artifacts`` input names to artifact URIs.
    """
    values = _bind(template, parameters, artifacts)
    annotations = _fill(template, "annotations", values, typed=False)
    labels = _fill(template, "labels", values, typed=False)
    spec = _fill(template, "spec", values, typed=True)

    plan_name = labels.get(PLAN_LABEL, DEFAULT_PLAN)
    plan = plans.get(plan_name) if isinstance(plan_name, str) else None
    if plan is None:
        raise InvalidConfiguration(
            f"unknown resource plan {plan_name!r}; known plans: {', '.join(sorted(plans)) or 'none'}"
        )
    predictor = spec.get("predictor")
    if not isinstance(predictor, dict):
        raise InvalidConfiguration(f"serving template {template.name!r} has no spec.predictor mapping")

    labels.update({PLAN_LABEL: plan.name, DEPLOYMENT_LABEL: deployment_id, GROUP_LABEL: group})
    low = predictor.setdefault("minReplicas", 0)
    # One replica at most unless the template keeps more than one running anyway.
    predictor.setdefault("maxReplicas", max(low, 1) if isinstance(low, int) else 1)
    apply_mode(template.name, annotations, predictor, group=group, deployment_id=deployment_id, settings=settings)
    _apply_plan(template, predictor, plan, settings)

    isvc: dict[str, Any] = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": deployment_id, "namespace": group, "labels": labels, "annotations": annotations},
        "spec": spec,
    }
    validate_inference_service(isvc)
    return isvc


def check_values(template: ServingTemplate, parameters: dict[str, str], *, settings: Settings) -> str:
    """The deployment mode these parameter values choose, refused now if they could never deploy
    (a request timeout, body limit or idle window that does not read; an unknown mode, Standard scale
    to zero without a metric source): for a configuration, before any artifact or deployment exists.
    Returns the mode."""
    values = _bind(template, parameters, {a.name: "s3://configuration/check" for a in template.artifacts})
    check_parameter_values(template, {p.name: p.default for p in template.parameters} | parameters)
    annotations = _fill(template, "annotations", values, typed=False)
    spec = _fill(template, "spec", values, typed=True)
    predictor = spec.get("predictor")
    if not isinstance(predictor, dict):
        raise InvalidConfiguration(f"serving template {template.name!r} has no spec.predictor mapping")
    predictor.setdefault("minReplicas", 0)
    return apply_mode(template.name, annotations, predictor, group="check", deployment_id="check",
                      settings=settings)


def _bind(
    template: ServingTemplate, parameters: Mapping[str, str], artifacts: Mapping[str, str]
) -> dict[tuple[str, str], str]:
    declared = {p.name: p for p in template.parameters}
    inputs = {a.name for a in template.artifacts}
    for kind, given, known in (("parameter", parameters, set(declared)), ("artifact", artifacts, inputs)):
        unknown = sorted(set(given) - known)
        if unknown:
            raise InvalidConfiguration(
                f"serving template {template.name!r} has no {kind} {', '.join(map(repr, unknown))}; "
                f"its {kind}s: {', '.join(sorted(known)) or 'none'}"
            )
        wrong = sorted(name for name, value in given.items() if not isinstance(value, str))
        if wrong:
            raise InvalidConfiguration(f"{kind} values must be strings: {', '.join(wrong)}")

    values: dict[tuple[str, str], str] = {}
    missing = []
    for name, parameter in declared.items():
        value = parameters.get(name, parameter.default)
        if value is None:
            missing.append(name)
        else:
            values["parameters", name] = value
    if missing:
        raise InvalidConfiguration(
            f"serving template {template.name!r} needs parameter {', '.join(map(repr, missing))}, "
            "which has no default"
        )
    unbound = sorted(inputs - set(artifacts))
    if unbound:
        raise InvalidConfiguration(
            f"serving template {template.name!r} needs an artifact bound to input "
            f"{', '.join(map(repr, unbound))}"
        )
    values.update({("artifacts", name): uri for name, uri in artifacts.items()})
    return values


def _apply_plan(
    template: ServingTemplate, predictor: dict[str, Any], plan: ResourcePlan, settings: Settings
) -> None:
    container = _model_container(template, predictor)
    resources = _mapping(template, container, "resources")
    for quantities in (_mapping(template, resources, "requests"), _mapping(template, resources, "limits")):
        quantities.update(cpu=plan.cpu, memory=plan.memory)
        # The plan, not the template, decides what a deployment may use (and costs).
        quantities.pop(GPU_RESOURCE, None)
    if plan.gpus == 0:
        return
    resources["limits"][GPU_RESOURCE] = plan.gpus
    if plan.gpu_type:
        _mapping(template, predictor, "nodeSelector")[settings.gpu_node_label] = plan.gpu_type
    tolerations = predictor.setdefault("tolerations", [])
    if not isinstance(tolerations, list):
        raise InvalidConfiguration(f"serving template {template.name!r}: tolerations must be a list")
    # GPU nodes are usually tainted so that only pods which ask for a GPU land there.
    toleration = {"key": settings.gpu_taint_key, "operator": "Exists", "effect": "NoSchedule"}
    if toleration not in tolerations:
        tolerations.append(toleration)


def _model_container(template: ServingTemplate, predictor: dict[str, Any]) -> dict[str, Any]:
    """The container that runs the model: KServe's model form, a framework form, or a custom container."""
    for key in ("model", *_FRAMEWORKS):
        if isinstance(predictor.get(key), dict):
            return predictor[key]  # type: ignore[no-any-return]
    containers = predictor.get("containers")
    if isinstance(containers, list) and containers and all(isinstance(c, dict) for c in containers):
        named = [c for c in containers if c.get("name") == "kserve-container"]
        return (named or containers)[0]  # type: ignore[no-any-return]
    raise InvalidConfiguration(
        f"serving template {template.name!r}: the predictor has no model, framework or containers to run"
    )


def _mapping(template: ServingTemplate, parent: dict[str, Any], key: str) -> dict[str, Any]:
    if parent.get(key) is None:
        parent[key] = {}
    child = parent[key]
    if not isinstance(child, dict):
        raise InvalidConfiguration(f"serving template {template.name!r}: {key} must be a mapping")
    return child
