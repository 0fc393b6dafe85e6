"""The ``zeroserve`` command: start the platform, publish events."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from zeroserve.bus import Bus
from zeroserve.errors import ZeroserveError
from zeroserve.events import EVENT_TYPES, Status, new_event, parse_data
from zeroserve.logcontext import ContextFilter
from zeroserve.settings import Settings
from zeroserve.storage import redact

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


@app.command()
def up(
    demo: Annotated[bool, typer.Option(help="Deploy the iris demo model and print how to call it.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Start zeroserve on this machine: NATS, the functions, the gateway, the local backend."""
    _configure_logging(verbose)
    try:
        asyncio.run(_up(Settings(), demo))
    except ZeroserveError as error:
        err.print(f"[red]zeroserve up failed:[/red] {error}")
        raise typer.Exit(1) from None


async def _up(settings: Settings, demo: bool) -> None:
    from zeroserve.embedded import Embedded

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    embedded = Embedded(settings)
    try:
        await embedded.start()
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
    from zeroserve.embedded import Embedded

    assert isinstance(embedded, Embedded) and embedded.platform is not None
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
    console.print("Call it (the first answer says X-Cold-Start: true, the next one false):")
    console.print(
        f"  curl -si -X POST {url}/v1/models/{DEPLOYMENT_ID}:predict \\\n"
        f"       -H 'Content-Type: application/json' -d '{json.dumps(SAMPLE)}'",
        soft_wrap=True, highlight=False,
    )


@app.command()
def publish(
    event_type: Annotated[str, typer.Argument(help="e.g. deployment.requested or io.zeroserve.deployment.requested")],
    data: Annotated[str, typer.Option("--data", "-d", help="The event data: JSON, or @file with JSON in it.")],
    group: Annotated[str, typer.Option("--group", "-g", help="The resource group.")] = "default",
    event_id: Annotated[str | None, typer.Option("--id", help="The CloudEvent id (default: a new uuid).")] = None,
) -> None:
    """Publish any event of the catalogue to NATS."""
    full_type = event_type if event_type.startswith("io.zeroserve.") else f"io.zeroserve.{event_type}"
    model = EVENT_TYPES.get(full_type)
    if model is None:
        err.print(f"[red]unknown event type {event_type!r}[/red]; known: {', '.join(sorted(EVENT_TYPES))}")
        raise typer.Exit(2)
    try:
        text = Path(data[1:]).read_text() if data.startswith("@") else data
        payload = model.model_validate(json.loads(text))
    except OSError as error:
        err.print(f"[red]cannot read {data[1:]}:[/red] {error.strerror}")
        raise typer.Exit(2) from None
    except json.JSONDecodeError as error:
        err.print(f"[red]--data is not JSON:[/red] {error}")
        raise typer.Exit(2) from None
    except ValueError as error:  # pydantic's ValidationError
        err.print(f"[red]--data is not a valid {full_type}:[/red]\n{error}")
        raise typer.Exit(2) from None
    event = new_event(payload, source="/zeroserve/cli", id=event_id)
    try:
        parse_data(event)
        published = asyncio.run(_publish(Settings(), event, group))
    except ZeroserveError as error:
        err.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None
    note = " (duplicate id: dropped)" if published.duplicate else ""
    console.print(f"published {full_type} id={event['id']} group={group} seq={published.sequence}{note}")


async def _publish(settings: Settings, event: object, group: str):  # type: ignore[no-untyped-def]
    url = settings.nats_url
    url_file = settings.data_dir / "nats.url"
    if url is None:
        if not url_file.exists():
            raise ZeroserveError(f"zeroserve is not running here (no {url_file}): start it with `zeroserve up`, "
                                 "or set ZEROSERVE_NATS_URL", reason="NotRunning")
        url = url_file.read_text().strip()
    try:
        bus = await asyncio.wait_for(Bus.connect(url, settings), 5)
    except Exception as error:
        raise ZeroserveError(f"cannot reach NATS at {redact(url)}: {error}", reason="NotRunning") from error
    try:
        return await bus.publish(event, group)  # type: ignore[arg-type]
    finally:
        await bus.close()


if __name__ == "__main__":
    app()
