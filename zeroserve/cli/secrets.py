"""``zeroserve secrets``: the group's object store secrets, where ``ai://<name>/<path>`` artifact URLs
lead: list, show (never the keys), create (S3, or ``local``: a directory on the zeroserve machine) and delete.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from zeroserve.cli.configurations import pairs
from zeroserve.cli.listing import Listing, WatchOption, listed
from zeroserve.cli.options import GroupOption, client_for
from zeroserve.cli.output import Format, OutputOption, console, failures, printed
from zeroserve.client import ObjectStoreSecret

secrets_app = typer.Typer(help="Object store secrets: where ai:// artifact URLs lead.", no_args_is_help=True)

SECRETS = Listing[ObjectStoreSecret](["NAME", "METADATA"],
                  lambda s: [s.name or "", " ".join(f"{k}={v}" for k, v in sorted(s.metadata.items()))],
                  lambda s: s.name or "")


@secrets_app.command("list")
def list_secrets(watch: WatchOption = False, group: GroupOption = None, output: OutputOption = Format.table) -> None:
    """List the group's object store secrets (never their keys)."""
    with failures(), client_for(group) as zs:
        listed(zs.object_store_secrets, SECRETS, output, watch)


@secrets_app.command("show")
def show_secret(name: Annotated[str, typer.Argument(help="The secret's name.")], group: GroupOption = None,
                output: OutputOption = Format.table) -> None:
    """Show one object store secret (never its keys)."""
    with failures(), client_for(group) as zs:
        found = zs.object_store_secret(name)
    grid = Table.grid(padding=(0, 2))
    for label, value in zip(SECRETS.columns, SECRETS.cells(found), strict=True):
        grid.add_row(label.lower(), value)
    printed(found, grid, output)


@secrets_app.command("create")
def create_secret(
    name: Annotated[str, typer.Argument(help="Its name: ai://NAME/path URLs go through it.")],
    type: Annotated[str, typer.Option("--type", help="S3, or local (a directory on the zeroserve machine).")],
    bucket: Annotated[str | None, typer.Option(help="S3: the bucket.")] = None,
    endpoint: Annotated[str | None, typer.Option(help="S3: the endpoint (host[:port]).")] = None,
    region: Annotated[str | None, typer.Option(help="S3: the region.")] = None,
    path_prefix: Annotated[str | None, typer.Option(
        help="A prefix inside the bucket; for local, the absolute directory.")] = None,
    data: Annotated[list[str] | None, typer.Option(
        "--data", "-d", help="A key, KEY=VALUE (repeatable): AWS_ACCESS_KEY_ID=..., AWS_SECRET_ACCESS_KEY=...")] = None,
    group: GroupOption = None,
) -> None:
    """Create an object store secret for the group."""
    keys = pairs(data or [], "--data")
    with failures(), client_for(group) as zs:
        zs.create_object_store_secret(name, type=type, data=keys, bucket=bucket, endpoint=endpoint, region=region,
                                      path_prefix=path_prefix)
    console.print(f"object store secret {name} created: ai://{name}/<path> leads there", highlight=False)


@secrets_app.command("delete")
def delete_secret(name: Annotated[str, typer.Argument(help="The secret's name.")], group: GroupOption = None) -> None:
    """Delete an object store secret."""
    with failures(), client_for(group) as zs:
        zs.delete_object_store_secret(name)
    console.print(f"object store secret {name} deleted", highlight=False)
