"""The ``zeroserve`` command: start the platform, and use it. ``up`` runs zeroserve on this machine
(and records a profile for it in the CLI's per-user config), ``publish`` puts an event on it, ``apply``
makes an artifact, a configuration and a deployment be as a file says; every other command is a thin
face on ``zeroserve.client``. Which zeroserve they talk to comes from the flags (``--url``,
``--profile``), the environment (``ZEROSERVE_API_URL``, ``ZEROSERVE_TOKEN``, ...), the current profile,
else the local data directory (``options``). Reads print a table, JSON or YAML (``-o``). A failure is
one line on stderr and an exit code: 2 when the input is wrong, 1 when the call failed; never a traceback.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from typing import Annotated

import typer

from zeroserve.cli.apply import apply
from zeroserve.cli.artifacts import artifacts, models_app
from zeroserve.cli.clients import clients_app, token
from zeroserve.cli.configurations import configurations_app
from zeroserve.cli.deploy import LAYOUTS, deploy
from zeroserve.cli.deployments import delete, deployments, logs, predict, status, stop
from zeroserve.cli.groups import groups_app
from zeroserve.cli.options import CHOSEN, Chosen
from zeroserve.cli.plans import plans
from zeroserve.cli.profiles import profiles_app
from zeroserve.cli.publish import publish
from zeroserve.cli.secrets import secrets_app
from zeroserve.cli.subscriptions import subscriptions_app
from zeroserve.cli.templates import templates_app
from zeroserve.cli.up import up


def _version() -> str:
    try:
        return installed_version("zeroserve")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"zeroserve {_version()}")
        raise typer.Exit()


app = typer.Typer(help="zeroserve: event-driven, scale-to-zero model serving.", no_args_is_help=True)


@app.callback()
def main(
    url: Annotated[str | None, typer.Option(
        help="The gateway to talk to (beats ZEROSERVE_API_URL and the profile).")] = None,
    profile: Annotated[str | None, typer.Option(
        help="A profile of the CLI's config (default: ZEROSERVE_PROFILE, else the current one); "
             "`up` writes the profile of this name.")] = None,
    version: Annotated[bool, typer.Option(
        "--version", help="Print the version and exit.", callback=_print_version, is_eager=True)] = False,
) -> None:
    """zeroserve: event-driven, scale-to-zero model serving. docs/cli.md says which zeroserve the
    commands talk to (--url, --profile, the environment, `zeroserve profiles`)."""
    CHOSEN.set(Chosen(url=url, profile=profile))


# In the order `zeroserve --help` lists them.
for command in (up, publish, deploy, apply, status, logs, predict, stop, delete, artifacts, deployments, plans,
                token):
    app.command(epilog=LAYOUTS if command is deploy else None)(command)
app.add_typer(models_app, name="models")
app.add_typer(configurations_app, name="configurations")
app.add_typer(subscriptions_app, name="subscriptions")
app.add_typer(secrets_app, name="secrets")
app.add_typer(groups_app, name="groups")
app.add_typer(clients_app, name="clients")
app.add_typer(profiles_app, name="profiles")
app.add_typer(templates_app, name="templates")
