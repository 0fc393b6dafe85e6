"""What the AI API's routes share: id patterns, common query parameters and the body base class.

Written as SAP's spec writes them (``aicore-openapi-2.42.0.yaml``), so a route that uses them
checks its input the way AI Core does.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

# SAP's id pattern (scenarios, executables, configurations, deployments, ...).
SAP_ID = r"^[\w.-]{4,64}$"

ScenarioFilter = Annotated[str | None, Query(alias="scenarioId", pattern=SAP_ID)]
ExecutableIds = Annotated[str | None, Query(alias="executableIds", pattern=r"^[\w.,-]*$",
                                            description="Comma-separated executable ids")]


class ApiBody(BaseModel):
    """A request body: camelCase on the wire as in SAP's spec, and nothing the spec does not name."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
