"""zeroserve's own ``/v2/admin/templates``: the serving templates a resource group may deploy, where
each comes from, and a quick way to add one without a repository (``zeroserve templates apply``).

SAP AI Core has no such route (its templates come only from git); this one is for local use. A
template applied here belongs to the ``AI-Resource-Group`` of the call, is checked as a synced one is
(a broken one is refused with its line and reason), and may not take the name of an operator's
template or of one an application syncs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from zeroserve.gateway.errors import ErrorAnswer, answers, not_found
from zeroserve.gateway.params import ApiBody
from zeroserve.gateway.security import InGroup, PlatformDep
from zeroserve.templates.executables import TemplateRefused

router = APIRouter(prefix="/v2/admin", tags=["templates"])


class TemplateApply(ApiBody):
    template: str = Field(description="A ServingTemplate (ai.sap.com/v1alpha1), as YAML text")
    file: str = Field(default="template.yaml", max_length=255, description="Its file name, for what is said of it")


class _Answer(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class TemplateView(_Answer):
    id: str
    scenario_id: str
    version_id: str
    origin: str = Field(description="operator, applied, or application NAME")
    created_at: datetime
    modified_at: datetime


class TemplateList(_Answer):
    count: int
    resources: list[TemplateView]


class TemplateApplied(_Answer):
    id: str
    changed: bool
    message: str


@router.get("/templates", summary="The serving templates the resource group may deploy, and where each is from",
            responses=answers(404))
async def list_templates(scope: InGroup, platform: PlatformDep) -> TemplateList:
    executables = await platform.executables.of(scope.group)
    views = [TemplateView(id=name, scenario_id=e.template.scenario_id, version_id=e.template.version, origin=e.origin,
                          created_at=e.created_at, modified_at=e.modified_at)
             for name, e in sorted(executables.items())]
    return TemplateList(count=len(views), resources=views)


@router.post("/templates", summary="Add or replace a serving template of the resource group (zeroserve's own)",
             responses=answers(400, 404))
async def apply_template(scope: InGroup, body: TemplateApply, platform: PlatformDep) -> TemplateApplied:
    try:
        template, changed = await platform.executables.apply(
            scope.group, body.template, body.file, platform.plans, platform.settings)
    except TemplateRefused as refused:
        raise ErrorAnswer(400, refused.reason, refused.message) from None
    done = "applied" if changed else "unchanged"
    return TemplateApplied(id=template.name, changed=changed,
                           message=f"executable {template.name} {done} in {scope.group}")


@router.delete("/templates/{executableId}", summary="Remove a template applied in the resource group",
               responses=answers(404))
async def delete_template(
    scope: InGroup, name: Annotated[str, Path(alias="executableId")], platform: PlatformDep,
) -> TemplateApplied:
    if not await platform.executables.remove_applied(scope.group, name):
        raise not_found(f"no template {name} was applied in {scope.group} (an operator's or synced one is removed "
                        "where it comes from)")
    return TemplateApplied(id=name, changed=True, message=f"template {name} removed from {scope.group}")
