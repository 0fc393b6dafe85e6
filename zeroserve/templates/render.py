"""Serving templates and resource plans, rendered into one KServe InferenceService.

A serving template is SAP AI Core's ``ServingTemplate`` (``ai.sap.com/v1alpha1``): string
parameters with defaults, artifact inputs, and an InferenceService template whose annotations,
labels and spec carry ``{{inputs.parameters.X}}`` and ``{{inputs.artifacts.X}}`` placeholders.
``render`` fills them from a deployment's configuration, applies the resource plan named by the
``ai.sap.com/resourcePlan`` label (CPU, memory, GPUs, GPU node selector and toleration), forces
Knative mode (KServe's default, Standard, cannot scale to zero) and checks the result against the
InferenceService CRD's schema, so that both backends receive the same valid object as a plain dict.
That schema, ``zeroserve/templates/schemas/inferenceservice-v1beta1.json``, is the v1beta1
``schema.openAPIV3Schema`` of KServe v0.20.0's ``config/crd/full/serving.kserve.io_inferenceservices.yaml``
(``shared/reference/crds/kserve-v0.20.0_serving.kserve.io_inferenceservices.yaml``), extracted
unchanged as compact JSON; ``tests/test_templates.py`` fails if the two drift apart.
"""

from __future__ import annotations

import functools
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import jsonschema
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from zeroserve.errors import InvalidConfiguration
from zeroserve.settings import Settings

PLAN_LABEL = "ai.sap.com/resourcePlan"
DEPLOYMENT_LABEL = "zeroserve.io/deployment-id"
GROUP_LABEL = "zeroserve.io/resource-group"
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
GPU_RESOURCE = "nvidia.com/gpu"
# SAP AI Core runs a template that names no plan on its smallest one.
DEFAULT_PLAN = "starter"
SCHEMA_FILE = "schemas/inferenceservice-v1beta1.json"

# The Kubernetes resource.Quantity pattern, as the CRD states it for requests and limits.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
_LABEL_VALUE = re.compile(LABEL_VALUE_PATTERN)
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# KServe's admission webhook is stricter than RFC 1123: an InferenceService name starts with a letter.
_ISVC_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

_PLACEHOLDER = re.compile(r"\{\{\s*inputs\.(parameters|artifacts)\.([A-Za-z0-9_-]+)\s*\}\}")
_BRACES = re.compile(r"\{\{.*?\}\}", re.DOTALL)
_FRAMEWORKS = (
    "sklearn", "xgboost", "lightgbm", "tensorflow", "pytorch",
    "triton", "onnx", "pmml", "paddle", "huggingface",
)
_STR_TAG = "tag:yaml.org,2002:str"
# A placeholder standing alone and unquoted takes the type YAML would give its value, but only a
# scalar type: a value can never turn into a mapping, a list, a merge key or a timestamp.
_SCALAR_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null")
)
_RESOLVER = yaml.resolver.Resolver()


def _text(value: object) -> object:
    """YAML turns `1.0` or `true` into numbers and booleans where SAP means strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


Text = Annotated[str, BeforeValidator(_text)]
Quantity = Annotated[str, BeforeValidator(_text), StringConstraints(pattern=QUANTITY_PATTERN)]
LabelValue = Annotated[str, StringConstraints(max_length=63, pattern=LABEL_VALUE_PATTERN)]
InputName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+$")]


def _problems(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or '(document)'}: {problem['msg']}"
        for problem in error.errors(include_url=False)
    )


# --- resource plans ---------------------------------------------------------------------------


class ResourcePlan(BaseModel):
    """What a deployment's model container gets: SAP's figures, or the operator's overrides."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: LabelValue
    cpu: Quantity
    memory: Quantity
    gpus: int = Field(default=0, ge=0)
    gpu_type: LabelValue | None = None


def load_resource_plans(settings: Settings) -> dict[str, ResourcePlan]:
    """The plans of ``settings.resource_plans_file`` with ``settings.resource_plans`` applied."""
    path = settings.resource_plans_file
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InvalidConfiguration(f"cannot read resource plans {path}: {error.strerror or error}") from error
    except yaml.YAMLError as error:
        raise InvalidConfiguration(f"resource plans {path} are not valid YAML: {error}") from error
    document = {} if document is None else document
    if not isinstance(document, dict):
        raise InvalidConfiguration(f"resource plans {path} must map plan names to their resources")

    merged: dict[str, dict[str, object]] = {}
    for origin, plans in ((str(path), document), ("settings.resource_plans", settings.resource_plans)):
        for name, fields in plans.items():
            if not isinstance(fields, dict):
                raise InvalidConfiguration(f"resource plan {name!r} in {origin} must be a mapping of fields")
            merged.setdefault(str(name), {}).update(_plan_fields(fields))

    result: dict[str, ResourcePlan] = {}
    for name, fields in merged.items():
        try:
            result[name] = ResourcePlan.model_validate({**fields, "name": name})
        except ValidationError as error:
            raise InvalidConfiguration(
                f"resource plan {name!r} ({path} and settings.resource_plans): {_problems(error)}"
            ) from error
    return result


def _plan_fields(fields: Mapping[Any, object]) -> dict[str, object]:
    # The manifest is written in Kubernetes' camelCase, overrides may use the Python names:
    # normalise both so that an override of gpu_type replaces the file's gpuType.
    return {"gpu_type" if key == "gpuType" else str(key): value for key, value in fields.items()}


# --- serving templates ------------------------------------------------------------------------


def _yaml_text(value: object) -> object:
    """A part written as a mapping is kept as YAML text, the form SAP itself uses (block strings)."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return yaml.safe_dump(value, sort_keys=False, allow_unicode=True)
    return value


YamlText = Annotated[str, BeforeValidator(_yaml_text)]


class TemplateParameter(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: InputName
    type: Literal["string"] = "string"
    default: Text | None = None
    description: str | None = None


class TemplateArtifact(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: InputName
    description: str | None = None


class InferenceServiceTemplate(BaseModel):
    """``spec.template`` of a ServingTemplate: each part YAML text that still holds its placeholders."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    api_version: Literal["serving.kserve.io/v1beta1"] = Field(
        default="serving.kserve.io/v1beta1", alias="apiVersion"
    )
    annotations: YamlText = ""
    labels: YamlText = ""
    spec: YamlText

    @model_validator(mode="before")
    @classmethod
    def _lift_metadata(cls, data: Any) -> Any:
        # SAP nests annotations and labels under metadata; one level less is simpler to use.
        if isinstance(data, dict) and "metadata" in data:
            data = dict(data)
            metadata = data.pop("metadata") or {}
            if not isinstance(metadata, dict) or set(metadata) - {"annotations", "labels"}:
                raise ValueError("metadata may hold only annotations and labels")
            data.update(metadata)
        return data

    def parts(self) -> dict[str, str]:
        return {"annotations": self.annotations, "labels": self.labels, "spec": self.spec}


class ServingTemplate(BaseModel):
    """One SAP ``ServingTemplate``: an executable of a scenario, deployable with a configuration."""

    model_config = ConfigDict(frozen=True)

    name: str
    scenario_id: str
    scenario_name: str
    scenario_description: str = ""
    executable_name: str
    description: str = ""
    version: str
    parameters: list[TemplateParameter] = Field(default_factory=list)
    artifacts: list[TemplateArtifact] = Field(default_factory=list)
    template: InferenceServiceTemplate

    @model_validator(mode="after")
    def _check_placeholders(self) -> Self:
        for kind, names in (
            ("parameter", [parameter.name for parameter in self.parameters]),
            ("artifact", [artifact.name for artifact in self.artifacts]),
        ):
            twice = sorted({name for name in names if names.count(name) > 1})
            if twice:
                raise ValueError(f"{kind} declared twice: {', '.join(twice)}")
        declared = {("parameters", p.name) for p in self.parameters} | {
            ("artifacts", a.name) for a in self.artifacts
        }
        for part, text in self.template.parts().items():
            for braces in _BRACES.finditer(text):
                placeholder = _PLACEHOLDER.fullmatch(braces[0])
                if placeholder is None:
                    raise ValueError(
                        f"template {part}: {braces[0]!r} is not a placeholder; write "
                        "{{inputs.parameters.NAME}} or {{inputs.artifacts.NAME}}"
                    )
                if (placeholder[1], placeholder[2]) not in declared:
                    raise ValueError(
                        f"template {part} uses {braces[0]} but spec.inputs.{placeholder[1]} "
                        f"declares no {placeholder[2]!r}"
                    )
            try:
                node = _compose(_Marked.of(text))
            except yaml.YAMLError as error:
                raise ValueError(f"template {part} is not valid YAML: {error}") from error
            if node is not None and not isinstance(node, yaml.MappingNode):
                raise ValueError(f"template {part} must be a mapping")
        return self

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "<string>") -> ServingTemplate:
        """Parse SAP's ServingTemplate format; ``source`` names the file in error messages."""
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as error:
            hint = (
                " (a placeholder outside quotes must sit in a block string, e.g. `spec: |`)"
                if "{{" in text else ""
            )
            raise InvalidConfiguration(f"{source} is not valid YAML{hint}: {error}") from error
        if not isinstance(document, dict):
            raise InvalidConfiguration(f"{source} is not a ServingTemplate: expected a mapping")
        try:
            sap = _SapServingTemplate.model_validate(document)
            return cls(
                name=sap.metadata.name,
                scenario_id=sap.metadata.labels.scenario_id,
                scenario_name=sap.metadata.annotations.scenario_name,
                scenario_description=sap.metadata.annotations.scenario_description,
                executable_name=sap.metadata.annotations.executable_name or sap.metadata.name,
                description=sap.metadata.annotations.description,
                version=sap.metadata.labels.version,
                parameters=sap.spec.inputs.parameters,
                artifacts=sap.spec.inputs.artifacts,
                template=sap.spec.template,
            )
        except ValidationError as error:
            raise InvalidConfiguration(f"{source}: {_problems(error)}") from error


class _SapAnnotations(BaseModel):
    model_config = ConfigDict(extra="allow")

    scenario_name: str = Field(alias="scenarios.ai.sap.com/name")
    scenario_description: str = Field(default="", alias="scenarios.ai.sap.com/description")
    executable_name: str | None = Field(default=None, alias="executables.ai.sap.com/name")
    description: str = Field(default="", alias="executables.ai.sap.com/description")


class _SapLabels(BaseModel):
    model_config = ConfigDict(extra="allow")

    scenario_id: Text = Field(alias="scenarios.ai.sap.com/id")
    version: Text = Field(alias="ai.sap.com/version")


class _SapMetadata(BaseModel):
    name: str = Field(min_length=1)
    annotations: _SapAnnotations
    labels: _SapLabels


class _SapInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parameters: list[TemplateParameter] = Field(default_factory=list)
    artifacts: list[TemplateArtifact] = Field(default_factory=list)

    @field_validator("parameters", "artifacts", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return [] if value is None else value


class _SapSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: _SapInputs = Field(default_factory=_SapInputs)
    template: InferenceServiceTemplate


class _SapServingTemplate(BaseModel):
    api_version: Literal["ai.sap.com/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["ServingTemplate"]
    metadata: _SapMetadata
    spec: _SapSpec


def load_templates(directory: Path) -> dict[str, ServingTemplate]:
    """Every ``*.yaml`` / ``*.yml`` ServingTemplate in ``directory``, by ``metadata.name``."""
    if not directory.is_dir():
        raise InvalidConfiguration(f"serving template directory {directory} does not exist")
    templates: dict[str, ServingTemplate] = {}
    origins: dict[str, Path] = {}
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise InvalidConfiguration(f"cannot read {path}: {error.strerror or error}") from error
        template = ServingTemplate.from_yaml(text, source=str(path))
        if template.name in templates:
            raise InvalidConfiguration(
                f"{path} and {origins[template.name]} both define serving template {template.name!r}"
            )
        templates[template.name] = template
        origins[template.name] = path
    return templates


# --- placeholders -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Marked:
    """YAML text whose placeholders are replaced by plain-scalar-safe markers.

    Filling values into the parsed tree instead of the text is what makes rendering injection
    safe: a value is only ever a scalar's content, whatever quotes or newlines it holds. Parsing
    after marking (not before) keeps SAP's style of unquoted placeholders valid YAML and tells a
    bare placeholder (``minReplicas: {{...}}``, typed like YAML would) from a quoted one (a string).
    """

    text: str
    refs: tuple[tuple[str, str], ...]
    marker: re.Pattern[str]

    @classmethod
    def of(cls, text: str) -> _Marked:
        nonce = secrets.token_hex(6)
        while nonce in text:
            nonce = secrets.token_hex(6)
        refs: list[tuple[str, str]] = []

        def mark(placeholder: re.Match[str]) -> str:
            refs.append((placeholder[1], placeholder[2]))
            return f"zs{nonce}x{len(refs) - 1}x"

        marked = _PLACEHOLDER.sub(mark, text)
        return cls(marked, tuple(refs), re.compile(f"zs{nonce}x([0-9]+)x"))


def _compose(marked: _Marked) -> yaml.Node | None:
    return yaml.compose(marked.text, Loader=yaml.SafeLoader)


@dataclass
class _Filling:
    marked: _Marked
    values: Mapping[tuple[str, str], str]
    typed: bool

    def __post_init__(self) -> None:
        # Anchors and aliases share nodes; the memo keeps them shared and stops on cycles.
        self.memo: dict[int, yaml.Node] = {}

    def value(self, marker: re.Match[str]) -> str:
        return self.values[self.marked.refs[int(marker[1])]]

    def fill(self, node: yaml.Node, *, key: bool = False) -> yaml.Node:
        if id(node) in self.memo:
            return self.memo[id(node)]
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, key=key)
        if isinstance(node, yaml.SequenceNode):
            sequence = yaml.SequenceNode(node.tag, [], node.start_mark, node.end_mark, node.flow_style)
            self.memo[id(node)] = sequence
            sequence.value.extend(self.fill(item) for item in node.value)
            return sequence
        if isinstance(node, yaml.MappingNode):
            mapping = yaml.MappingNode(node.tag, [], node.start_mark, node.end_mark, node.flow_style)
            self.memo[id(node)] = mapping
            mapping.value.extend((self.fill(k, key=True), self.fill(v)) for k, v in node.value)
            return mapping
        return node

    def _scalar(self, node: yaml.ScalarNode, *, key: bool) -> yaml.Node:
        alone = self.marked.marker.fullmatch(node.value)
        if alone and self.typed and not key and node.style is None and node.tag == _STR_TAG:
            value = self.value(alone)
            tag = _RESOLVER.resolve(yaml.ScalarNode, value, (True, False))
            tag = tag if tag in _SCALAR_TAGS else _STR_TAG
            return yaml.ScalarNode(tag, value, node.start_mark, node.end_mark, style=None)
        if not self.marked.marker.search(node.value):
            return node
        value = self.marked.marker.sub(self.value, node.value)
        return yaml.ScalarNode(node.tag, value, node.start_mark, node.end_mark, style=node.style)


def _fill(
    template: ServingTemplate, part: str, values: Mapping[tuple[str, str], str], *, typed: bool
) -> dict[str, Any]:
    marked = _Marked.of(template.template.parts()[part])
    try:
        node = _compose(marked)
        if node is None:
            return {}
        loader = yaml.SafeLoader("")
        try:
            result = loader.construct_document(_Filling(marked, values, typed).fill(node))
        finally:
            loader.dispose()
    except (yaml.YAMLError, ValueError) as error:
        raise InvalidConfiguration(
            f"serving template {template.name!r}: cannot fill its {part}: {error}"
        ) from error
    if not isinstance(result, dict):
        raise InvalidConfiguration(f"serving template {template.name!r}: its {part} must be a mapping")
    return result


# --- rendering --------------------------------------------------------------------------------


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
    annotations[DEPLOYMENT_MODE_ANNOTATION] = "Knative"
    low = predictor.setdefault("minReplicas", 0)
    # One replica at most unless the template keeps more than one running anyway.
    predictor.setdefault("maxReplicas", max(low, 1) if isinstance(low, int) else 1)
    _apply_plan(template, predictor, plan, settings)

    isvc: dict[str, Any] = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": deployment_id, "namespace": group, "labels": labels, "annotations": annotations},
        "spec": spec,
    }
    validate_inference_service(isvc)
    return isvc


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


# --- validation -------------------------------------------------------------------------------


def validate_inference_service(isvc: dict[str, Any]) -> None:
    """Refuse what the API server or KServe's admission webhook would refuse.

    The object is checked against the CRD schema, strictly: a field the schema does not know is an
    error here, where the API server would drop it with at most a warning. Then come the checks the
    schema cannot express: names and labels as Kubernetes and KServe require them, and KServe's
    replica rules.
    """
    error = jsonschema.exceptions.best_match(_validator().iter_errors(isvc))
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
    spec = isvc.get("spec")
    if not isinstance(spec, dict) or "predictor" not in spec:
        raise InvalidConfiguration("InferenceService spec.predictor is required")
    for component in ("predictor", "transformer", "explainer"):
        if component in spec:
            _validate_replicas(component, spec[component])


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


def _path(parts: Any) -> str:
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path or "(object)"


def _shorten(message: str, limit: int = 300) -> str:
    return message if len(message) <= limit else f"{message[: limit - 3]}..."
