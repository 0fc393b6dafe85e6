"""Serving templates: SAP AI Core's ``ServingTemplate`` (``ai.sap.com/v1alpha1``), an executable of
a scenario with string parameters (with defaults), artifact inputs, and an InferenceService template
whose annotations, labels and spec carry placeholders; each is checked when it is loaded, so that
a template that names an undeclared input or is not YAML never reaches a deployment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Self

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
from zeroserve.templates.fields import Text, problems
from zeroserve.templates.placeholders import BRACES, PLACEHOLDER, Marked, compose

InputName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+$")]


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
            for braces in BRACES.finditer(text):
                placeholder = PLACEHOLDER.fullmatch(braces[0])
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
                node = compose(Marked.of(text))
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
            raise InvalidConfiguration(f"{source}: {problems(error)}") from error


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
