"""The ``zeroserve`` command: start the platform, and use it. ``up`` runs zeroserve on this machine
and ``publish`` puts an event on it; every other command is a thin face on ``zeroserve.client``,
which finds the gateway and credentials in the settings (``ZEROSERVE_API_URL``, ``ZEROSERVE_TOKEN``
or ``ZEROSERVE_CLIENT_ID`` + ``ZEROSERVE_CLIENT_SECRET``), else in what a local ``zeroserve up``
wrote to its data directory. A failure is one line on stderr and an exit code: 2 when the input is
wrong, 1 when the call failed; never a traceback.
"""

from __future__ import annotations

import typer

from zeroserve.cli.artifacts import artifacts, models_app
from zeroserve.cli.clients import clients_app, token
from zeroserve.cli.deploy import deploy
from zeroserve.cli.deployments import delete, deployments, logs, predict, status, stop
from zeroserve.cli.publish import publish
from zeroserve.cli.templates import templates_app
from zeroserve.cli.up import up

app = typer.Typer(help="zeroserve: event-driven, scale-to-zero model serving.", no_args_is_help=True)
# In the order `zeroserve --help` lists them.
for command in (up, publish, deploy, status, logs, predict, stop, delete, artifacts, deployments, token):
    app.command()(command)
app.add_typer(models_app, name="models")
app.add_typer(clients_app, name="clients")
app.add_typer(templates_app, name="templates")
