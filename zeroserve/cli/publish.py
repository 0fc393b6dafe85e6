"""``zeroserve publish``: put one event of the catalogue (``artifact.created``,
``deployment.requested``, ...) on the platform through the gateway, checked against its model first.
"""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError

from zeroserve.cli.options import GroupOption, client_for, json_argument
from zeroserve.cli.output import bad_input, console, failures
from zeroserve.events import EVENT_TYPES, new_event


def publish(
    event_type: Annotated[str, typer.Argument(help="e.g. deployment.requested or io.zeroserve.deployment.requested")],
    data: Annotated[str, typer.Option("--data", "-d", help="The event data: JSON, or @file with JSON in it.")],
    group: GroupOption = None,
    event_id: Annotated[str | None, typer.Option("--id", help="The CloudEvent id (default: a new uuid).")] = None,
) -> None:
    """Publish an event of the catalogue (artifact.created, deployment.requested, ...) through the gateway."""
    full_type = event_type if event_type.startswith("io.zeroserve.") else f"io.zeroserve.{event_type}"
    model = EVENT_TYPES.get(full_type)
    if model is None:
        raise bad_input(f"unknown event type {event_type!r}; known: {', '.join(sorted(EVENT_TYPES))}")
    document = json_argument(data, "--data")
    try:
        payload = model.model_validate(document)
    except ValidationError as error:
        raise bad_input(f"--data is not a valid {full_type}:\n{error}") from None
    event = new_event(payload, source="/zeroserve/cli", id=event_id)
    with failures(), client_for(group) as client:
        published = client.publish(event)[0]
    note = " (duplicate id: dropped)" if published.duplicate else ""
    console.print(f"published {full_type} id={published.id} group={client.group}{note}", highlight=False)
