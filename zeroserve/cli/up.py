"""``zeroserve up``: run zeroserve on this machine (NATS, the functions, the gateway, the local
backend), or only some of its roles, until Ctrl-C; with ``--demo`` it also deploys the iris model
and prints how to call it. Once the gateway is up, it records a profile for it (``local``, or the
name ``--profile`` gives) in the CLI's per-user config, current if none is, so the other commands
find it from any directory.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import signal
import time
from datetime import UTC, datetime
from typing import Annotated

import typer

from zeroserve.cli.options import chosen_flags, load_settings
from zeroserve.cli.output import console, err, self_command
from zeroserve.cli.profiles import LOCAL_PROFILE, remember
from zeroserve.errors import ZeroserveError
from zeroserve.events import Status
from zeroserve.settings import Settings


def _configure_logging(verbose: bool, log_format: str = "text") -> None:
    # Here: the JSON formatter is the server extra's (python-json-logger), and the other commands need none of it.
    from zeroserve.core.logcontext import ContextFilter
    from zeroserve.core.logformat import formatter

    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    for noisy in ("nats", "httpx", "uvicorn.error", "kserve", "storage.initializer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class Role(enum.StrEnum):
    gateway = "gateway"
    functions = "functions"
    watcher = "watcher"


def up(
    demo: Annotated[bool, typer.Option(help="Deploy the iris demo model and print how to call it.")] = False,
    role: Annotated[list[Role] | None, typer.Option(
        help="Run only this part (repeatable; default: all). On a cluster each runs in its own pods.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Start zeroserve on this machine: NATS, the functions, the gateway, the local backend."""
    roles = [r.value for r in role] if role else None
    if demo and roles:
        err.print("[red]--demo needs every role in this process[/red]")
        raise typer.Exit(2)
    _require_server()
    from zeroserve.core import tracing
    from zeroserve.node import run  # here: the other commands need none of what it imports

    settings = load_settings()
    _configure_logging(verbose, settings.log_format)
    tracing.configure(settings)
    profile = chosen_flags().profile or settings.profile or LOCAL_PROFILE
    try:
        run(_up(settings, demo, roles, profile))
    except ZeroserveError as error:
        err.print(f"[red]zeroserve up failed:[/red] {error}")
        raise typer.Exit(1) from None
    finally:
        tracing.shutdown()  # what is still buffered is exported before the process ends


def _require_server() -> None:
    """`pip install zeroserve` is the client: running the platform needs its server extra."""
    from zeroserve.extras import SERVER_MODULES, install_hint, missing

    if missing(SERVER_MODULES):
        err.print(f"zeroserve up needs the server: {install_hint('server')}", markup=False, highlight=False)
        raise typer.Exit(1)


async def _up(settings: Settings, demo: bool, roles: list[str] | None = None, profile: str = LOCAL_PROFILE) -> None:
    from zeroserve.node import Node, cancel
    from zeroserve.roles import ROLES

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    embedded = Node(settings, roles or ROLES)
    try:
        # Ctrl-C stops a start too: waiting for a NATS that is not there yet, say.
        starting = asyncio.create_task(embedded.start())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([starting, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not starting.done():
            await cancel([starting])
            return
        await starting
        if "gateway" not in embedded.roles:
            console.print(f"[green]zeroserve {' and '.join(sorted(embedded.roles))} is up[/green]")
        else:
            console.print(f"[green]zeroserve is up[/green]: gateway {embedded.url}  (Ctrl-C stops everything)")
            console.print(f"web console: {embedded.url}/console/  (sign in with the client id and secret in "
                          f"{embedded.settings.data_dir / 'credentials.json'})", highlight=False, soft_wrap=True)
            _remember(embedded.settings, profile, embedded.url)
        if demo:
            await _deploy_demo(embedded, stop)
        await stop.wait()
    finally:
        console.print("stopping ...")
        await embedded.stop()
        console.print("stopped.")


def _remember(settings: Settings, profile: str, url: str) -> None:
    """The profile of this zeroserve, so that the commands find it from any directory."""
    try:
        path, current = remember(settings, profile, url, settings.data_dir / "credentials.json")
    except (OSError, typer.Exit) as error:  # a read-only home: the commands still work from here
        err.print(f"[yellow]no profile written[/yellow] ({error}): the commands work from this directory, or "
                  "with ZEROSERVE_DATA_DIR")
        return
    note = "current" if current else f"`{self_command()} profiles use {profile}` makes it current"
    console.print(f"profile {profile} written to {path} ({note})", highlight=False, soft_wrap=True)


async def _deploy_demo(embedded: object, stop: asyncio.Event) -> None:
    from zeroserve.demo import DEPLOYMENT_ID, SAMPLE, publish_demo, train_iris
    from zeroserve.node import Node

    assert isinstance(embedded, Node) and embedded.platform is not None
    platform = embedded.platform
    group = "default"
    model_dir = train_iris(platform.settings.data_dir / "demo" / "iris")
    asked_at = datetime.now(UTC)  # what happened to the deployment before this run does not count
    await publish_demo(platform, model_dir, "/zeroserve/cli/demo", group)
    deployment = None
    deadline = time.monotonic() + 120
    with console.status("deploying the iris demo ..."):
        while time.monotonic() < deadline and not stop.is_set():
            deployment = await platform.store.deployments.get(group, DEPLOYMENT_ID)
            if deployment is not None and deployment.modified_at >= asked_at and (
                    deployment.status == Status.DEAD
                    or (deployment.status == Status.RUNNING and deployment.inference_service)):
                break
            await asyncio.sleep(0.1)
    if stop.is_set():
        return
    if deployment is None or deployment.status != Status.RUNNING:
        status = deployment.status.value if deployment else "not created"
        detail = f"{deployment.reason}: {deployment.message}" if deployment and deployment.reason else ""
        err.print(f"[red]the demo deployment is {status}[/red] {detail}")
        return
    url = deployment.deployment_url
    console.print(f"\n[bold]Deployment {DEPLOYMENT_ID} is RUNNING[/bold] (0 replicas: the first call starts one)")
    console.print(f"URL: {url}\n")
    console.print("Call it with a bearer token (the first answer says X-Cold-Start: true, the next one false):")
    console.print(
        f"  TOKEN=$({self_command()} token)\n"
        f"  curl -si -X POST {url}/v1/models/{DEPLOYMENT_ID}:predict \\\n"
        f"       -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' -d '{json.dumps(SAMPLE)}'",
        soft_wrap=True, highlight=False,
    )

