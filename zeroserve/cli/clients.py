"""The commands on API clients and their tokens: ``clients create``, ``clients list``,
``clients delete`` and ``token``, a bearer token for curl.
"""

from __future__ import annotations

from typing import Annotated

import typer

from zeroserve.cli.listing import Listing, show
from zeroserve.cli.options import GroupOption, client_for
from zeroserve.cli.output import Format, OutputOption, console, failures, when
from zeroserve.client import ApiClient

clients_app = typer.Typer(help="API clients: ids and secrets that get bearer tokens.", no_args_is_help=True)


@clients_app.command("create")
def create_client(
    groups: Annotated[list[str], typer.Option(
        "--group", "-g", help="A resource group it may use (repeatable); '*' for all and the admin routes.")],
    name: Annotated[str | None, typer.Option(help="What it is for, e.g. ci-pipeline.")] = None,
) -> None:
    """Create an API client and print its id and secret (the secret is shown this once)."""
    with failures(), client_for(None) as zs:
        created = zs.create_client(groups, name=name)
    console.print(f"client id:     {created.client_id}", highlight=False)
    console.print(f"client secret: {created.client_secret}", highlight=False)
    console.print("The secret is shown this once. Use it with:\n"
                  f"  export ZEROSERVE_CLIENT_ID={created.client_id} ZEROSERVE_CLIENT_SECRET=<the secret>",
                  highlight=False)


@clients_app.command("list")
def list_clients(output: OutputOption = Format.table) -> None:
    """List the API clients and their resource groups (never their secrets)."""
    with failures(), client_for(None) as zs:
        found = zs.clients()
    show(found, Listing[ApiClient](["ID", "GROUPS", "NAME", "CREATED"],
                        lambda c: [c.client_id, ", ".join(c.groups), c.name or "", when(c.created_at)],
                        lambda c: c.client_id), output)


@clients_app.command("delete")
def delete_client(client_id: Annotated[str, typer.Argument(help="The client id.")]) -> None:
    """Delete an API client: it gets no new tokens (those it has stay valid until they expire)."""
    with failures(), client_for(None) as zs:
        zs.delete_client(client_id)
    console.print(f"client {client_id} deleted", highlight=False)


def token(group: GroupOption = None) -> None:
    """Print a bearer token, for curl: -H "Authorization: Bearer $(zeroserve token)"."""
    with failures(), client_for(group) as zs:
        typer.echo(zs.token())
