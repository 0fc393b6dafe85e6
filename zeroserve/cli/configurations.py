"""``zeroserve configurations``: list, show and create configurations (a serving template with
parameter values and input artifacts), the thing a deployment runs. SAP's API deletes none.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from zeroserve.cli.listing import Listing, WatchOption, listed
from zeroserve.cli.options import GroupOption, client_for
from zeroserve.cli.output import Format, OutputOption, bad_input, console, failures, printed, when
from zeroserve.client import Configuration

configurations_app = typer.Typer(help="Configurations: a serving template with parameters and artifacts.",
                                 no_args_is_help=True)

CONFIGURATIONS = Listing[Configuration](
    ["ID", "NAME", "EXECUTABLE", "PARAMETERS", "ARTIFACTS", "CREATED"],
    lambda c: [c.id, c.name, c.executable_id, " ".join(f"{p.key}={p.value}" for p in c.parameter_bindings),
               " ".join(f"{a.key}={a.artifact_id}" for a in c.input_artifact_bindings), when(c.created_at)],
    lambda c: c.id)


def pairs(values: list[str], option: str) -> dict[str, str]:
    """``key=value`` options as a mapping, or exit 2 naming the one that is not."""
    found = {}
    for value in values:
        key, equals, rest = value.partition("=")
        if not equals or not key:
            raise bad_input(f"{option} {value!r} is not key=value")
        found[key] = rest
    return found


@configurations_app.command("list")
def list_configurations(
    executable: Annotated[str | None, typer.Option("--executable", "-e", help="Only of this template.")] = None,
    watch: WatchOption = False, group: GroupOption = None, output: OutputOption = Format.table,
) -> None:
    """List the configurations of the group."""
    with failures(), client_for(group) as zs:
        listed(lambda: zs.configurations(executable_ids=[executable] if executable else None), CONFIGURATIONS,
               output, watch)


@configurations_app.command("show")
def show_configuration(
    configuration_id: Annotated[str, typer.Argument(help="The configuration id.")],
    group: GroupOption = None, output: OutputOption = Format.table,
) -> None:
    """Show one configuration."""
    with failures(), client_for(group) as zs:
        found: Configuration = zs.configuration(configuration_id)
    grid = Table.grid(padding=(0, 2))
    for label, value in zip(CONFIGURATIONS.columns, CONFIGURATIONS.cells(found), strict=True):
        grid.add_row(label.lower(), value)
    printed(found, grid, output)


@configurations_app.command("create")
def create_configuration(
    name: Annotated[str, typer.Argument(help="Its name (deployments of it show it as theirs).")],
    executable: Annotated[str, typer.Option("--executable", "-e", help="The serving template.")],
    param: Annotated[list[str] | None, typer.Option(
        "--param", "-p", help="A template parameter, key=value (repeatable).")] = None,
    artifact: Annotated[list[str] | None, typer.Option(
        "--artifact", "-a", help="An input artifact, input=artifact-id (repeatable), e.g. -a model=<id>.")] = None,
    group: GroupOption = None,
) -> None:
    """Create a configuration and print its id."""
    parameters, artifacts = pairs(param or [], "--param"), pairs(artifact or [], "--artifact")
    with failures(), client_for(group) as zs:
        created = zs.create_configuration(name, executable_id=executable, parameters=parameters, artifacts=artifacts)
    console.print(f"configuration [bold]{created.id}[/bold] created", highlight=False)
