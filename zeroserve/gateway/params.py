"""What the AI API's routes share: id patterns, common query parameters, the body base class, and
how a route looks a record up by the id a caller gave.

Written as SAP's spec writes them (``aicore-openapi-2.42.0.yaml``), so a route that uses them
checks its input the way AI Core does.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from zeroserve.core.store import Registry
from zeroserve.events import is_id
from zeroserve.gateway.errors import not_found

R = TypeVar("R", bound=BaseModel)

# SAP's id pattern (scenarios, executables, configurations, deployments, ...).
SAP_ID = r"^[\w.-]{4,64}$"
# SAP's pattern of a name (artifacts, configurations).
NAME = r"^[\w\s.!?,;:\[\](){}<>\"'=+*/\\^&%@~$#|-]*$"

ScenarioFilter = Annotated[str | None, Query(alias="scenarioId", pattern=SAP_ID)]
ExecutableIds = Annotated[str | None, Query(alias="executableIds", pattern=r"^[\w.,-]*$",
                                            description="Comma-separated executable ids")]


class ApiBody(BaseModel):
    """A request body: camelCase on the wire as in SAP's spec, and nothing the spec does not name."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


async def stored(registry: Registry[R], group: str, id: str) -> R | None:
    """The record ``id`` of ``group``, or None when there is none.

    zeroserve gives artifacts, configurations, deployments and subscriptions ids of ``ID_PATTERN`` (its
    UUIDs among them), so any other id names nothing. It is not asked of the store: SAP's id pattern
    admits what a NATS KV key cannot hold (``\\w`` is any Unicode letter), and asking with such a key
    is an error, not a miss.
    """
    return await registry.get(group, id) if is_id(id) else None


async def stored_or_404(registry: Registry[R], group: str, id: str, missing: str) -> R:
    """The record ``id`` of ``group``, or a 404 that says ``missing``."""
    found = await stored(registry, group, id)
    if found is None:
        raise not_found(missing)
    return found
