"""``zeroserve subscriptions``: outbound webhooks, the group's events delivered to a URL and signed
(Standard Webhooks): list, show, create (which prints the signing secret, once) and delete.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from zeroserve.cli.listing import Listing, WatchOption, listed
from zeroserve.cli.options import GroupOption, client_for
from zeroserve.cli.output import Format, OutputOption, console, failures, printed, when
from zeroserve.client import Subscription

subscriptions_app = typer.Typer(help="Webhooks out: the group's events delivered to a URL.", no_args_is_help=True)

SUBSCRIPTIONS = Listing[Subscription](["ID", "URL", "EVENT TYPES", "DESCRIPTION", "CREATED"],
                        lambda s: [s.id, s.url, ", ".join(s.event_types), s.description or "", when(s.created_at)],
                        lambda s: s.id)


@subscriptions_app.command("list")
def list_subscriptions(watch: WatchOption = False, group: GroupOption = None,
                       output: OutputOption = Format.table) -> None:
    """List the group's subscriptions (never their secrets)."""
    with failures(), client_for(group) as zs:
        listed(zs.subscriptions, SUBSCRIPTIONS, output, watch)


@subscriptions_app.command("show")
def show_subscription(subscription_id: Annotated[str, typer.Argument(help="The subscription id.")],
                      group: GroupOption = None, output: OutputOption = Format.table) -> None:
    """Show one subscription."""
    with failures(), client_for(group) as zs:
        found = zs.subscription(subscription_id)
    grid = Table.grid(padding=(0, 2))
    for label, value in zip(SUBSCRIPTIONS.columns, SUBSCRIPTIONS.cells(found), strict=True):
        grid.add_row(label.lower(), value)
    printed(found, grid, output)


@subscriptions_app.command("create")
def create_subscription(
    url: Annotated[str, typer.Argument(help="Where the events go (https://...).")],
    event_type: Annotated[list[str], typer.Option(
        "--event-type", "-t", help="An event type (repeatable), e.g. io.zeroserve.deployment.status.")],
    description: Annotated[str | None, typer.Option(help="What it is for.")] = None,
    group: GroupOption = None,
) -> None:
    """Deliver the group's events of these types to URL; prints the signing secret (shown this once)."""
    with failures(), client_for(group) as zs:
        created = zs.create_subscription(url, event_type, description=description)
    console.print(f"subscription [bold]{created.id}[/bold] created", highlight=False)
    console.print(f"signing secret: {created.secret} (shown this once)", highlight=False)


@subscriptions_app.command("delete")
def delete_subscription(subscription_id: Annotated[str, typer.Argument(help="The subscription id.")],
                        group: GroupOption = None) -> None:
    """Stop delivering to a subscription."""
    with failures(), client_for(group) as zs:
        zs.delete_subscription(subscription_id)
    console.print(f"subscription {subscription_id} deleted", highlight=False)
