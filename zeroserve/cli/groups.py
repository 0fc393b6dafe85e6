"""``zeroserve groups``: the resource groups, the tenants' rooms: list and show (any token: the groups
it may use), create and delete (an admin token, as a local `zeroserve up` gives).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from zeroserve.cli.configurations import pairs
from zeroserve.cli.listing import Listing, WatchOption, listed
from zeroserve.cli.options import client_for
from zeroserve.cli.output import Format, OutputOption, console, failures, printed, when
from zeroserve.client import ResourceGroup

groups_app = typer.Typer(help="Resource groups: the tenants' rooms.", no_args_is_help=True)

GROUPS = Listing[ResourceGroup](
    ["ID", "STATUS", "LABELS", "CREATED"],
    lambda g: [g.resource_group_id, g.status or "", " ".join(f"{x.key}={x.value}" for x in g.labels),
               when(g.created_at)],
    lambda g: g.resource_group_id)


@groups_app.command("list")
def list_groups(watch: WatchOption = False, output: OutputOption = Format.table) -> None:
    """List the resource groups this token may use."""
    with failures(), client_for(None) as zs:
        listed(zs.resource_groups, GROUPS, output, watch)


@groups_app.command("show")
def show_group(group_id: Annotated[str, typer.Argument(help="The resource group id.")],
               output: OutputOption = Format.table) -> None:
    """Show one resource group."""
    with failures(), client_for(None) as zs:
        found = zs.resource_group(group_id)
    grid = Table.grid(padding=(0, 2))
    for label, value in zip(GROUPS.columns, GROUPS.cells(found), strict=True):
        grid.add_row(label.lower(), value)
    printed(found, grid, output)


@groups_app.command("create")
def create_group(
    group_id: Annotated[str, typer.Argument(help="The new group's id (3 to 253 characters).")],
    label: Annotated[list[str] | None, typer.Option(
        "--label", "-l", help="A label, ext.ai.sap.com/KEY=VALUE (repeatable).")] = None,
) -> None:
    """Create a resource group (an admin token)."""
    with failures(), client_for(None) as zs:
        zs.create_resource_group(group_id, labels=pairs(label or [], "--label"))
    console.print(f"resource group {group_id} created", highlight=False)


@groups_app.command("delete")
def delete_group(group_id: Annotated[str, typer.Argument(help="The resource group id.")]) -> None:
    """Delete a resource group with its artifacts, configurations and secrets (refused while it has deployments)."""
    with failures(), client_for(None) as zs:
        zs.delete_resource_group(group_id)
    console.print(f"resource group {group_id} deleted", highlight=False)
