"""Resource plans: what a deployment's model container gets (CPU, memory, GPUs and their type),
named by a template's ``ai.sap.com/resourcePlan`` label, SAP AI Core's figures from the plans file
with the operator's overrides from the settings applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zeroserve.errors import InvalidConfiguration
from zeroserve.settings import Settings
from zeroserve.templates.fields import LabelValue, Quantity, problems

PLAN_LABEL = "ai.sap.com/resourcePlan"
# SAP AI Core runs a template that names no plan on its smallest one.
DEFAULT_PLAN = "starter"


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
                f"resource plan {name!r} ({path} and settings.resource_plans): {problems(error)}"
            ) from error
    return result


def _plan_fields(fields: Mapping[Any, object]) -> dict[str, object]:
    # The manifest is written in Kubernetes' camelCase, overrides may use the Python names:
    # normalise both so that an override of gpu_type replaces the file's gpuType.
    return {"gpu_type" if key == "gpuType" else str(key): value for key, value in fields.items()}
