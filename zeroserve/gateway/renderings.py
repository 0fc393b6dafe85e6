"""zeroserve's dry run of a deployment (``POST /v2/renderings``, an extension: SAP's API has none):
the KServe InferenceService a deployment would get, rendered from the group's serving template, the
parameters, the artifacts and the resource plans exactly as ``deployment.requested`` renders it, and
checked against KServe's schema, without creating, staging or publishing anything. An input artifact
is named by the id of a registered artifact or by the URL one would be registered with (checked as
registering checks it). ``zeroserve apply --dry-run`` prints it.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from zeroserve.errors import ArtifactNotFound, InvalidConfiguration, ZeroserveError
from zeroserve.events import DEPLOYMENT_ID_PATTERN
from zeroserve.gateway.artifacts import ARTIFACT_URL
from zeroserve.gateway.configurations import ParameterBindingData
from zeroserve.gateway.errors import ErrorAnswer, answers
from zeroserve.gateway.params import SAP_ID, ApiBody
from zeroserve.gateway.security import InGroup, PlatformDep
from zeroserve.platform import Platform
from zeroserve.templates import validation
from zeroserve.templates.plans import PLAN_LABEL
from zeroserve.templates.render import render

router = APIRouter(prefix="/v2")

# The name the InferenceService gets when the request names no deployment id.
DRY_RUN_ID = "dry-run"


class InputArtifact(ApiBody):
    """An input of the template: a registered artifact's id, or the URL of one not registered yet."""

    key: Annotated[str, Field(max_length=256)]
    artifact_id: Annotated[str | None, Field(pattern=SAP_ID)] = None
    url: Annotated[str | None, Field(max_length=1024, pattern=ARTIFACT_URL)] = None

    @model_validator(mode="after")
    def _one_of_them(self) -> InputArtifact:
        if (self.artifact_id is None) == (self.url is None):
            raise ValueError("give artifactId or url, one of them")
        return self


class RenderingRequest(ApiBody):
    """A deployment as it would be requested: a template with parameter values and input artifacts."""

    executable_id: Annotated[str, Field(pattern=SAP_ID)]
    deployment_id: Annotated[str, Field(pattern=DEPLOYMENT_ID_PATTERN)] = DRY_RUN_ID
    parameter_bindings: Annotated[list[ParameterBindingData], Field(max_length=1000)] = []
    input_artifact_bindings: Annotated[list[InputArtifact], Field(max_length=1000)] = []


class Rendering(BaseModel):
    """The InferenceService the deployment would get, and the resource plan it runs on."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    deployment_id: str
    resource_plan: str | None
    inference_service: dict[str, Any] = Field(description="The KServe InferenceService (serving.kserve.io/v1beta1)")


async def artifact_uri(platform: Platform, group: str, binding: InputArtifact) -> str:
    """The URI the InferenceService would carry for one input: checked, never fetched."""
    url = binding.url
    if binding.artifact_id is not None:
        artifact = await platform.store.artifacts.get(group, binding.artifact_id)
        if artifact is None:
            raise ArtifactNotFound(f"artifact {binding.artifact_id!r} (input {binding.key!r}) is not registered "
                                   f"in {group}")
        url = artifact.url
    assert url is not None
    source = await platform.models.locate(url, group, platform.store.object_store_secrets)
    return source.uri


@router.post("/renderings", response_model=Rendering, response_model_by_alias=True,
             summary="Dry run: the InferenceService a deployment would get (nothing is created)",
             responses=answers(400, 404))
async def render_deployment(body: RenderingRequest, scope: InGroup, platform: PlatformDep) -> Rendering:
    try:
        template = await platform.executables.get(scope.group, body.executable_id)
        if template is None:
            known = ", ".join(sorted(await platform.executables.templates(scope.group))) or "none"
            raise InvalidConfiguration(f"no serving template {body.executable_id!r} (known: {known})")
        artifacts = {binding.key: await artifact_uri(platform, scope.group, binding)
                     for binding in body.input_artifact_bindings}
        if not validation.prepared():
            await asyncio.to_thread(validation.prepare)
        isvc = render(template, deployment_id=body.deployment_id, group=scope.group,
                      parameters={binding.key: binding.value for binding in body.parameter_bindings},
                      artifacts=artifacts, plans=platform.plans, settings=platform.settings)
    except ZeroserveError as refused:
        raise ErrorAnswer(400, refused.reason, refused.message) from None
    return Rendering(deployment_id=body.deployment_id, resource_plan=isvc["metadata"]["labels"].get(PLAN_LABEL),
                     inference_service=isvc)
