"""The ``zeroserve`` command: start the platform, and use it.

``up`` runs zeroserve on this machine and ``publish`` puts an event on its NATS. Every other
command is a thin face on ``zeroserve.client``: ``deploy`` (register a model, configure it,
deploy it and watch it come up), ``status``, ``logs``, ``predict``, ``stop``, ``delete``,
``artifacts``, ``deployments``, ``models compare``, ``clients create`` and ``token``. They find the
gateway and credentials in the settings (``ZEROSERVE_API_URL``, ``ZEROSERVE_TOKEN`` or
``ZEROSERVE_CLIENT_ID`` + ``ZEROSERVE_CLIENT_SECRET``), else in what a local ``zeroserve up`` wrote
to its data directory. A failure is one line on stderr and an exit code: 2 when the input is
wrong, 1 when the call failed; never a traceback.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import json
import logging
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from zeroserve.client import ApiError, Client, Deployment, Event
from zeroserve.core.logcontext import ContextFilter
from zeroserve.errors import ZeroserveError
from zeroserve.events import EVENT_TYPES, Status, new_event
from zeroserve.settings import Settings

app = typer.Typer(help="zeroserve: event-driven, scale-to-zero model serving.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


class _Formatter(logging.Formatter):
    """Plain lines, with the deployment and event ids a record carries."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        for key in ("deployment", "event"):
            value = getattr(record, key, None)
            if value:
                line += f" {key}={value}"
        return line


def _configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    for noisy in ("nats", "httpx", "uvicorn.error", "kserve", "storage.initializer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class Role(enum.StrEnum):
    gateway = "gateway"
    functions = "functions"
    watcher = "watcher"


@app.command()
def up(
    demo: Annotated[bool, typer.Option(help="Deploy the iris demo model and print how to call it.")] = False,
    role: Annotated[list[Role] | None, typer.Option(
        help="Run only this part (repeatable; default: all). On a cluster each runs in its own pods.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Start zeroserve on this machine: NATS, the functions, the gateway, the local backend."""
    _configure_logging(verbose)
    roles = [r.value for r in role] if role else None
    if demo and roles:
        err.print("[red]--demo needs every role in this process[/red]")
        raise typer.Exit(2)
    try:
        asyncio.run(_up(_settings(), demo, roles))
    except ZeroserveError as error:
        err.print(f"[red]zeroserve up failed:[/red] {error}")
        raise typer.Exit(1) from None


async def _up(settings: Settings, demo: bool, roles: list[str] | None = None) -> None:
    from zeroserve.node import ROLES, Node, cancel

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
        if demo:
            await _deploy_demo(embedded, stop)
        await stop.wait()
    finally:
        console.print("stopping ...")
        await embedded.stop()
        console.print("stopped.")


async def _deploy_demo(embedded: object, stop: asyncio.Event) -> None:
    from zeroserve.demo import DEPLOYMENT_ID, SAMPLE, demo_events, train_iris
    from zeroserve.node import Node

    assert isinstance(embedded, Node) and embedded.platform is not None
    platform = embedded.platform
    group = "default"
    model_dir = train_iris(platform.settings.data_dir / "demo" / "iris")
    asked_at = datetime.now(UTC)  # what happened to the deployment before this run does not count
    for data in demo_events(model_dir):
        await platform.bus.publish(new_event(data, source="/zeroserve/cli/demo"), group)
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
        f"  TOKEN=$({_self_command()} token)\n"
        f"  curl -si -X POST {url}/v1/models/{DEPLOYMENT_ID}:predict \\\n"
        f"       -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' -d '{json.dumps(SAMPLE)}'",
        soft_wrap=True, highlight=False,
    )


def _self_command() -> str:
    """How this shell can run zeroserve again: the installed command, or this Python with -m."""
    launched_as = Path(sys.argv[0])
    if launched_as.name == "zeroserve":
        return shlex.quote(str(launched_as))
    return "zeroserve" if shutil.which("zeroserve") else f"{shlex.quote(sys.executable)} -m zeroserve.cli"


# --- the API, through zeroserve.client -----------------------------------------------------------------

GroupOption = Annotated[str | None, typer.Option(
    "--group", "-g", help="The resource group (default: ZEROSERVE_RESOURCE_GROUP, else default).")]
# Statuses a deployment stays in until someone acts: watching ends there.
SETTLED = {"RUNNING", "STOPPED", "DEAD"}
# SAP's metric label naming the artifact a metric describes: the column says that already.
ARTIFACT_NAME_LABEL = "metrics.ai.sap.com/Artifact.name"
STATUS_STYLE = {"RUNNING": "green", "DEAD": "red", "PENDING": "yellow", "UNKNOWN": "yellow",
                "STOPPING": "magenta", "STOPPED": "dim"}


@contextlib.contextmanager
def _failures() -> Iterator[None]:
    """One line on stderr and an exit code for whatever goes wrong: 2 for bad input, 1 otherwise."""
    try:
        yield
    except ApiError as error:
        err.print(f"[red]{escape(error.code)}[/red]: {escape(error.message)}", highlight=False, soft_wrap=True)
        raise typer.Exit(2 if error.status == 400 else 1) from None
    except ValidationError as error:  # an answer or an input that does not parse (settings: see _settings)
        err.print(f"[red]invalid {escape(error.title)}:[/red] {escape(_problems(error))}", highlight=False,
                  soft_wrap=True)
        raise typer.Exit(2) from None
    except ZeroserveError as error:
        err.print(f"[red]{escape(error.reason)}[/red]: {escape(error.message)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _problems(error: ValidationError, variables: bool = False) -> str:
    """Where and why, never the value given: a bad setting may be a secret (a webhook's, a key).
    ``variables``: name a setting as its environment variable (``ZEROSERVE_WEBHOOKS.s3.secret``)."""
    found = []
    for problem in error.errors(include_input=False, include_url=False):
        where = [str(part) for part in problem["loc"]] or ["(the whole)"]
        if variables:
            where[0] = f"ZEROSERVE_{where[0].upper()}"
        found.append(f"{'.'.join(where)}: {problem['msg']}")
    return "; ".join(found)


def _settings() -> Settings:
    """The settings from the environment, or one line naming each bad variable and exit code 2."""
    try:
        return Settings()
    except ValidationError as error:
        err.print(f"[red]invalid settings:[/red] {escape(_problems(error, variables=True))}", highlight=False,
                  soft_wrap=True)
        raise typer.Exit(2) from None


def _bad_input(message: str) -> typer.Exit:
    err.print(f"[red]{escape(message)}[/red]", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def _client(group: str | None) -> Client:
    settings = _settings()
    return Client.local(settings, group=group or settings.resource_group)


def _json_argument(value: str, option: str) -> Any:
    """JSON given inline or as @file, as curl's -d takes it."""
    try:
        text = Path(value[1:]).read_text() if value.startswith("@") else value
        return json.loads(text)
    except OSError as error:
        raise _bad_input(f"cannot read {value[1:]}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise _bad_input(f"{option} is not JSON: {error}") from None


@app.command()
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
        raise _bad_input(f"unknown event type {event_type!r}; known: {', '.join(sorted(EVENT_TYPES))}")
    document = _json_argument(data, "--data")
    try:
        payload = model.model_validate(document)
    except ValidationError as error:
        raise _bad_input(f"--data is not a valid {full_type}:\n{error}") from None
    event = new_event(payload, source="/zeroserve/cli", id=event_id)
    with _failures(), _client(group) as client:
        published = client.publish(event)[0]
    note = " (duplicate id: dropped)" if published.duplicate else ""
    console.print(f"published {full_type} id={published.id} group={client.group}{note}", highlight=False)


def _when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def _styled(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


class _DeploymentView:
    """What the live panel shows of a deployment: its record, updated by its status and log events."""

    def __init__(self, deployment_id: str) -> None:
        self.id = deployment_id
        self.status = "UNKNOWN"
        self.reason: str | None = None
        self.message: str | None = None
        self.url: str | None = None
        self.replicas: int | None = None
        self.plan: str | None = None
        self.logs: collections.deque[str] = collections.deque(maxlen=6)
        self.started = time.monotonic()

    @property
    def settled(self) -> bool:
        return self.status in SETTLED

    def show(self, deployment: Deployment) -> None:
        self.status = deployment.status
        self.reason = deployment.reason
        self.message = deployment.status_message
        self.url = deployment.deployment_url or self.url
        self.replicas = deployment.running_replicas
        self.plan = deployment.resource_plan or self.plan

    def apply(self, event: Event) -> None:
        data = event.data if isinstance(event.data, dict) else {}
        if event.type.endswith(".deployment.status"):
            self.status = str(data.get("status", self.status))
            self.reason = data.get("reason")
            self.message = data.get("message")
            self.url = data.get("deploymentUrl") or self.url
            self.replicas = data.get("runningReplicas", self.replicas)
            self.plan = data.get("resourcePlan") or self.plan
        elif event.type.endswith(".deployment.log"):
            self.logs.append(f"{data.get('source', '')}: {data.get('message', '')}".strip(": "))

    def render(self) -> Panel:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column(overflow="fold")
        grid.add_row("status", _styled(self.status) + (f"  {escape(self.reason)}" if self.reason else ""))
        if self.message:
            grid.add_row("", escape(self.message))
        if self.replicas is not None:
            grid.add_row("replicas", str(self.replicas))
        if self.plan:
            grid.add_row("plan", self.plan)
        if self.url:
            grid.add_row("url", self.url)
        grid.add_row("elapsed", f"{time.monotonic() - self.started:.0f} s")
        for line in self.logs:
            grid.add_row("log", escape(line))
        return Panel(grid, title=f"deployment {self.id}", expand=False)


def _wait_until_known(zs: Client, deployment_id: str, deadline: float) -> Deployment:
    # A deployment just asked for may reach the registry a moment after the 202.
    while True:
        try:
            return zs.deployment(deployment_id)
        except ApiError as error:
            if error.status != 404 or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def _watch(zs: Client, deployment_id: str, timeout: float) -> _DeploymentView:
    """Show the deployment live until it settles (RUNNING, STOPPED, DEAD) or ``timeout`` passes."""
    view = _DeploymentView(deployment_id)
    deadline = time.monotonic() + timeout
    with Live(view.render(), console=console, refresh_per_second=4) as live:
        view.show(_wait_until_known(zs, deployment_id, min(deadline, time.monotonic() + 30)))
        live.update(view.render())
        if view.settled:
            return view
        events = zs.deployment_events(deployment_id, timeout=max(deadline - time.monotonic(), 1))
        try:
            try:
                events.open()
            except ApiError as error:
                if error.status in (0, 401, 403):
                    raise
                # A gateway without a working event stream (older, or a proxy that refuses it): the
                # record still tells where the deployment is, read every half second.
                return _poll(zs, view, live, deadline)
            # Read once more now that the stream is open: a change in between is in one or the other.
            view.show(zs.deployment(deployment_id))
            live.update(view.render())
            for event in events if not view.settled else ():
                view.apply(event)
                live.update(view.render())
                if view.settled or time.monotonic() > deadline:
                    break
        except ApiError as error:
            if error.code != "Timeout":
                raise
        finally:
            events.close()
    return view


def _poll(zs: Client, view: _DeploymentView, live: Live, deadline: float) -> _DeploymentView:
    while not view.settled and time.monotonic() < deadline:
        time.sleep(0.5)
        view.show(zs.deployment(view.id))
        live.update(view.render())
    return view


def _predict_example(zs: Client, deployment_id: str, url: str) -> None:
    sample = '{"instances": [[...]]}'
    console.print("Call it:")
    console.print(f"  {_self_command()} predict {deployment_id} --data '{sample}'", soft_wrap=True, highlight=False)
    console.print(f"  curl -s -X POST {url}/v1/models/{deployment_id}:predict \\\n"
                  f"       -H \"Authorization: Bearer $({_self_command()} token)\" "
                  f"-H 'Content-Type: application/json' -d '{sample}'", soft_wrap=True, highlight=False)


def _settled_or_exit(view: _DeploymentView, timeout: float) -> None:
    if view.status == "DEAD":
        why = f"{view.reason}: {view.message}" if view.reason else (view.message or "no reason given")
        err.print(f"[red]deployment {view.id} is DEAD[/red]: {escape(why)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if not view.settled:
        err.print(f"[red]deployment {view.id} is still {view.status} after {timeout:g} s[/red]; follow it with "
                  f"`zeroserve status {view.id} --watch`", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _parameters(values: list[str]) -> dict[str, str]:
    parameters = {}
    for value in values:
        key, equals, rest = value.partition("=")
        if not equals or not key:
            raise _bad_input(f"--param {value!r} is not key=value")
        parameters[key] = rest
    return parameters


def _model_url(model: str) -> str:
    if "://" in model:
        return model
    path = Path(model).expanduser()
    if not path.exists():
        raise _bad_input(f"{model}: no such file or directory (give a path or a URL: file://, s3://, https://, ...)")
    return path.resolve().as_uri()


def _input_artifact(zs: Client, executable: str) -> str:
    """The name of the executable's model input (``model`` in zeroserve's templates)."""
    try:
        found = zs.executable(executable)
    except ApiError as error:
        if error.status != 404:
            raise
        known = ", ".join(sorted(e.id for e in zs.executables()))
        raise _bad_input(f"no executable {executable!r}; known: {known or 'none'}") from None
    if not found.input_artifacts:
        raise _bad_input(f"executable {executable} takes no input artifact to deploy a model with")
    return found.input_artifacts[0].name


@app.command()
def deploy(
    model: Annotated[str | None, typer.Argument(
        help="Where the model is: a local path, or a URL (file://, s3://, gs://, https://, ai://).")] = None,
    configuration: Annotated[str | None, typer.Option(
        "--configuration", "-c", help="Deploy this existing configuration instead of a model.")] = None,
    executable: Annotated[str, typer.Option("--executable", "-e", help="The serving template.")] = "sklearn",
    param: Annotated[list[str] | None, typer.Option(
        "--param", "-p", help="A template parameter, key=value (repeatable), e.g. -p maxReplicas=4.")] = None,
    plan: Annotated[str | None, typer.Option(help="The resource plan: starter, basic, infer.s, ...")] = None,
    name: Annotated[str | None, typer.Option(help="Name of the artifact and configuration.")] = None,
    ttl: Annotated[str | None, typer.Option(help="Stop and delete after this long: 30m, 2h, 1d.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for RUNNING.")] = 300,
    wait: Annotated[bool, typer.Option(help="Watch the deployment until it is RUNNING or DEAD.")] = True,
    group: GroupOption = None,
) -> None:
    """Deploy a model: register it, configure a serving template for it, deploy, and watch it come up."""
    if (model is None) == (configuration is None):
        raise _bad_input("give a model (path or URL) or --configuration ID, not both")
    parameters = _parameters(param or [])
    if plan is not None:
        parameters["resourcePlan"] = plan
    if configuration is not None and parameters:
        raise _bad_input("--param and --plan belong to a new configuration: not with --configuration")
    with _failures(), _client(group) as zs:
        if configuration is None:
            assert model is not None
            url = _model_url(model)
            label = name or (url.rstrip("/").rsplit("/", 1)[-1] or "model")
            key = _input_artifact(zs, executable)
            artifact = zs.create_artifact(label, url, kind="model")
            console.print(f"artifact [bold]{artifact.id}[/bold] registered: {url}", highlight=False)
            configured = zs.create_configuration(label, executable_id=executable, parameters=parameters,
                                                 artifacts={key: artifact.id})
            configuration = configured.id
            console.print(f"configuration [bold]{configuration}[/bold]: {executable}"
                          + "".join(f" {k}={v}" for k, v in parameters.items()), highlight=False)
        created = zs.create_deployment(configuration, ttl=ttl)
        console.print(f"deployment [bold]{created.id}[/bold] requested", highlight=False)
        if not wait:
            return
        try:
            view = _watch(zs, created.id, timeout)
        except KeyboardInterrupt:
            err.print(f"stopped watching; the deployment goes on: `zeroserve status {created.id} --watch`")
            raise typer.Exit(130) from None
        _settled_or_exit(view, timeout)
        url = view.url or zs.inference_url(created.id)
        console.print(f"\n[bold]Deployment {created.id} is {view.status}[/bold]", highlight=False)
        console.print(f"URL: {url}", soft_wrap=True, highlight=False)
        if view.status == "RUNNING":
            _predict_example(zs, created.id, url)


@app.command()
def status(
    deployment_id: Annotated[str, typer.Argument(help="The deployment id.")],
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Follow it until it settles.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to watch at most.")] = 600,
    group: GroupOption = None,
) -> None:
    """Show a deployment: status (with the reason when DEAD: exit code 1), replicas, URL."""
    with _failures(), _client(group) as zs:
        if watch:
            try:
                view = _watch(zs, deployment_id, timeout)
            except KeyboardInterrupt:
                raise typer.Exit(130) from None
            _settled_or_exit(view, timeout)
            return
        deployment = zs.deployment(deployment_id)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    grid.add_row("status", _styled(deployment.status) + (f"  {escape(deployment.reason)}" if deployment.reason else ""))
    if deployment.status_message:
        grid.add_row("", escape(deployment.status_message))
    for label, value in (("target", deployment.target_status), ("replicas", deployment.running_replicas),
                         ("plan", deployment.resource_plan), ("url", deployment.deployment_url),
                         ("executable", deployment.executable_id), ("configuration", deployment.configuration_id),
                         ("created", _when(deployment.created_at)), ("modified", _when(deployment.modified_at))):
        if value not in (None, ""):
            grid.add_row(label, str(value))
    console.print(Panel(grid, title=f"deployment {deployment_id}", expand=False))
    if deployment.status == "DEAD":
        raise typer.Exit(1)


@app.command()
def logs(
    deployment_id: Annotated[str, typer.Argument(help="The deployment id.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines (Ctrl-C ends).")] = False,
    top: Annotated[int | None, typer.Option("--top", help="At most this many lines.")] = None,
    group: GroupOption = None,
) -> None:
    """Print a deployment's log: the control plane's and the model servers' lines, kept after replicas are gone."""
    with _failures(), _client(group) as zs:
        if not follow:
            for record in zs.deployment_logs(deployment_id, top=top):
                _log_line(record.timestamp, record.source, record.msg)
            return
        # The stream opens first, so no line falls between the read and the follow.
        with zs.deployment_events(deployment_id) as events:
            seen = set()
            for record in zs.deployment_logs(deployment_id, top=top):
                seen.add((record.timestamp, record.msg))
                _log_line(record.timestamp, record.source, record.msg)
            try:
                for event in events:
                    if not event.type.endswith(".deployment.log") or not isinstance(event.data, dict):
                        continue
                    moment = _parse_time(event.data.get("timestamp"))
                    message = str(event.data.get("message", ""))
                    if (moment, message) not in seen:
                        _log_line(moment, event.data.get("source"), message)
            except KeyboardInterrupt:
                return


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _log_line(moment: datetime | None, source: str | None, message: str) -> None:
    stamp = moment.astimezone().isoformat(timespec="milliseconds") if moment else "-"
    typer.echo(f"{stamp} {source or '-'} {message}")


@app.command()
def predict(
    deployment_id: Annotated[str, typer.Argument(help="The deployment id.")],
    data: Annotated[str, typer.Option("--data", "-d", help="The request: JSON, or @file with JSON in it.")],
    v2: Annotated[bool, typer.Option("--v2", help="Open Inference Protocol (V2 /infer) instead of V1 :predict.")]
    = False,
    model: Annotated[str | None, typer.Option(help="The model name (default: the deployment id).")] = None,
    group: GroupOption = None,
) -> None:
    """Call a deployed model (a deployment at zero starts a replica for it) and print the answer."""
    payload = _json_argument(data, "--data")
    with _failures(), _client(group) as zs:
        answer = zs.predict(deployment_id, payload, protocol="v2" if v2 else "v1", model=model)
    typer.echo(json.dumps(answer, indent=2))


@app.command()
def stop(deployment_id: Annotated[str, typer.Argument(help="The deployment id.")], group: GroupOption = None) -> None:
    """Stop a deployment: every replica is released; the record, its logs and its URL stay."""
    with _failures(), _client(group) as zs:
        answer = zs.stop_deployment(deployment_id)
    console.print(f"deployment {answer.id}: {answer.message or 'stopping'}", highlight=False)


@app.command()
def delete(deployment_id: Annotated[str, typer.Argument(help="The deployment id.")], group: GroupOption = None) -> None:
    """Delete a stopped or dead deployment."""
    with _failures(), _client(group) as zs:
        answer = zs.delete_deployment(deployment_id)
    console.print(f"deployment {answer.id}: {answer.message or 'deleting'}", highlight=False)


@app.command()
def artifacts(group: GroupOption = None) -> None:
    """List the registered artifacts (models, data sets)."""
    with _failures(), _client(group) as zs:
        found = zs.artifacts()
    table = Table("ID", "NAME", "KIND", "URL", "CREATED", box=None, header_style="bold", pad_edge=False)
    for artifact in sorted(found, key=lambda a: a.created_at or datetime.min.replace(tzinfo=UTC)):
        table.add_row(artifact.id, artifact.name, artifact.kind, artifact.url, _when(artifact.created_at))
    console.print(table, soft_wrap=True)


@app.command()
def deployments(
    status: Annotated[str | None, typer.Option(help="Only deployments with this status, e.g. RUNNING.")] = None,
    group: GroupOption = None,
) -> None:
    """List the deployments with their status, replicas and URL."""
    with _failures(), _client(group) as zs:
        found = zs.deployments(status=status.upper() if status else None)
    table = Table("ID", "STATUS", "REPLICAS", "EXECUTABLE", "URL", "MODIFIED", box=None, header_style="bold",
                  pad_edge=False)
    for deployment in sorted(found, key=lambda d: d.created_at or datetime.min.replace(tzinfo=UTC)):
        replicas = deployment.running_replicas
        status_text = _styled(deployment.status) + (f" ({deployment.reason})" if deployment.reason else "")
        table.add_row(deployment.id, status_text, "" if replicas is None else str(replicas),
                      deployment.executable_id or "", deployment.deployment_url or "", _when(deployment.modified_at))
    console.print(table, soft_wrap=True)


models_app = typer.Typer(help="Compare models (artifacts) by their quality metrics.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("compare")
def compare(
    first: Annotated[str, typer.Argument(help="An artifact id.")],
    second: Annotated[str, typer.Argument(help="Another artifact id.")],
    group: GroupOption = None,
) -> None:
    """Show two models' metrics side by side, with the difference."""
    with _failures(), _client(group) as zs:
        names = {artifact_id: zs.artifact(artifact_id).name for artifact_id in (first, second)}
        found = {entry.artifact_id: entry.metrics for entry in zs.metrics([first, second])}
    values: dict[str, dict[str, float]] = {}
    for artifact_id in (first, second):
        for metric in found.get(artifact_id, []):
            label = metric.name + "".join(f" {label.name}={label.value}" for label in metric.labels
                                          if label.name != ARTIFACT_NAME_LABEL)
            values.setdefault(label, {})[artifact_id] = metric.value
    if not values:
        err.print(f"neither {first} nor {second} has metrics (artifact.created's `metrics` records them)")
        raise typer.Exit(1)
    table = Table("METRIC", f"{first} ({names[first]})", f"{second} ({names[second]})", "DIFFERENCE",
                  box=None, header_style="bold", pad_edge=False)
    for label in sorted(values):
        a, b = values[label].get(first), values[label].get(second)
        difference = f"{b - a:+.4g}" if a is not None and b is not None else ""
        table.add_row(label, "" if a is None else f"{a:.4g}", "" if b is None else f"{b:.4g}", difference)
    console.print(table, soft_wrap=True)


clients_app = typer.Typer(help="API clients: ids and secrets that get bearer tokens.", no_args_is_help=True)
app.add_typer(clients_app, name="clients")


@clients_app.command("create")
def create_client(
    groups: Annotated[list[str], typer.Option(
        "--group", "-g", help="A resource group it may use (repeatable); '*' for all and the admin routes.")],
    name: Annotated[str | None, typer.Option(help="What it is for, e.g. ci-pipeline.")] = None,
) -> None:
    """Create an API client and print its id and secret (the secret is shown this once)."""
    with _failures(), _client(None) as zs:
        created = zs.create_client(groups, name=name)
    console.print(f"client id:     {created.client_id}", highlight=False)
    console.print(f"client secret: {created.client_secret}", highlight=False)
    console.print("The secret is shown this once. Use it with:\n"
                  f"  export ZEROSERVE_CLIENT_ID={created.client_id} ZEROSERVE_CLIENT_SECRET=<the secret>",
                  highlight=False)


@clients_app.command("list")
def list_clients() -> None:
    """List the API clients and their resource groups (never their secrets)."""
    with _failures(), _client(None) as zs:
        found = zs.clients()
    table = Table("ID", "GROUPS", "NAME", "CREATED", box=None, header_style="bold", pad_edge=False)
    for client in found:
        table.add_row(client.client_id, ", ".join(client.groups), client.name or "", _when(client.created_at))
    console.print(table, soft_wrap=True)


@clients_app.command("delete")
def delete_client(client_id: Annotated[str, typer.Argument(help="The client id.")]) -> None:
    """Delete an API client: it gets no new tokens (those it has stay valid until they expire)."""
    with _failures(), _client(None) as zs:
        zs.delete_client(client_id)
    console.print(f"client {client_id} deleted", highlight=False)


@app.command()
def token(group: GroupOption = None) -> None:
    """Print a bearer token, for curl: -H "Authorization: Bearer $(zeroserve token)"."""
    with _failures(), _client(group) as zs:
        typer.echo(zs.token())


if __name__ == "__main__":
    app()
