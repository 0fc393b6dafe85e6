"""SAP AI API's instance types (``GET /v2/admin/resources/instanceTypes``): the resource plans a
serving template may name (``ai.sap.com/resourcePlan``), with the CPU, memory and GPUs each gives.
SAP's billable units per hour are 0 here (zeroserve bills nothing); ``gpuType`` is zeroserve's
addition (the GPU a plan's node selector asks for).
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from zeroserve.gateway.security import Caller, PlatformDep
from zeroserve.templates.plans import ResourcePlan

router = APIRouter(prefix="/v2/admin/resources")

# A Kubernetes CPU quantity's suffix: "500m" is half a core.
MILLI = "m"


class InstanceType(BaseModel):
    """SAP's BckndInstanceType entry: one plan's resources."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    memory: str = Field(description='Memory of the plan, as Kubernetes writes it (e.g. "3G")')
    cpu: float = Field(description="CPU cores of the plan")
    gpu: float = Field(description="GPUs of the plan")
    billable_units_per_hour: float = Field(0.0, description="Always 0: zeroserve bills nothing")
    gpu_type: str | None = Field(None, description="zeroserve's addition: the GPU product the plan asks for")


class InstanceTypes(BaseModel):
    """SAP's BckndInstanceTypeGetResponse: the instance types (resource plans) by name."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    instance_types: dict[str, InstanceType]


def cores(quantity: str) -> float:
    """A CPU quantity ("2", "0.5", "500m") in cores."""
    return float(quantity[:-1]) / 1000 if quantity.endswith(MILLI) else float(quantity)


def instance_type(plan: ResourcePlan) -> InstanceType:
    return InstanceType(memory=plan.memory, cpu=cores(plan.cpu), gpu=plan.gpus, billable_units_per_hour=0.0,
                        gpu_type=plan.gpu_type)


@router.get("/instanceTypes", response_model=InstanceTypes, response_model_by_alias=True,
            response_model_exclude_none=True,
            summary="The resource plans (instance types) and what each gives")
async def instance_types(caller: Caller, platform: PlatformDep) -> InstanceTypes:
    return InstanceTypes(instance_types={name: instance_type(plan) for name, plan in sorted(platform.plans.items())})
