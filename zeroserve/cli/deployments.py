"""The commands on deployments that exist: ``status`` (optionally watched until it settles),
``logs`` (optionally followed), ``predict``, ``stop``, ``delete`` and ``deployments``, the list.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.panel import Panel
from rich.table import Table

from zeroserve.cli.options import GroupOption, client_for, json_argument
from zeroserve.cli.output import console, failures, status_grid, styled, when
from zeroserve.cli.watch import settled_or_exit, watch_deployment


def status(
    deployment_id: Annotated[str, typer.Argument(help="The deployment id.")],
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Follow it until it settles.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to watch at most.")] = 600,
    group: GroupOption = None,
) -> None:
    """Show a deployment: status (with the reason when DEAD: exit code 1), replicas, URL."""
    with failures(), client_for(group) as zs:
        if watch:
            try:
                view = watch_deployment(zs, deployment_id, timeout)
            except KeyboardInterrupt:
                raise typer.Exit(130) from None
            settled_or_exit(view, timeout)
            return
        deployment = zs.deployment(deployment_id)
    grid = status_grid(deployment.status, deployment.reason, deployment.status_message)
    for label, value in (("target", deployment.target_status), ("replicas", deployment.running_replicas),
                         ("plan", deployment.resource_plan), ("url", deployment.deployment_url),
                         ("executable", deployment.executable_id), ("configuration", deployment.configuration_id),
                         ("created", when(deployment.created_at)), ("modified", when(deployment.modified_at))):
        if value not in (None, ""):
            grid.add_row(label, str(value))
    console.print(Panel(grid, title=f"deployment {deployment_id}", expand=False))
    if deployment.status == "DEAD":
        raise typer.Exit(1)


def logs(
    deployment_id: Annotated[str, typer.Argument(help="The deployment id.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines (Ctrl-C ends).")] = False,
    top: Annotated[int | None, typer.Option("--top", help="At most this many lines.")] = None,
    group: GroupOption = None,
) -> None:
    """Print a deployment's log: the control plane's and the model servers' lines, kept after replicas are gone."""
    with failures(), client_for(group) as zs:
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


def predict(
    deployment_id: Annotated[str, typer.Argument(help="The deployment id.")],
    data: Annotated[str, typer.Option("--data", "-d", help="The request: JSON, or @file with JSON in it.")],
    v2: Annotated[bool, typer.Option("--v2", help="Open Inference Protocol (V2 /infer) instead of V1 :predict.")]
    = False,
    model: Annotated[str | None, typer.Option(help="The model name (default: the deployment id).")] = None,
    group: GroupOption = None,
) -> None:
    """Call a deployed model (a deployment at zero starts a replica for it) and print the answer."""
    payload = json_argument(data, "--data")
    with failures(), client_for(group) as zs:
        answer = zs.predict(deployment_id, payload, protocol="v2" if v2 else "v1", model=model)
    typer.echo(json.dumps(answer, indent=2))


def stop(deployment_id: Annotated[str, typer.Argument(help="The deployment id.")], group: GroupOption = None) -> None:
    """Stop a deployment: every replica is released; the record, its logs and its URL stay."""
    with failures(), client_for(group) as zs:
        answer = zs.stop_deployment(deployment_id)
    console.print(f"deployment {answer.id}: {answer.message or 'stopping'}", highlight=False)


def delete(deployment_id: Annotated[str, typer.Argument(help="The deployment id.")], group: GroupOption = None) -> None:
    """Delete a stopped or dead deployment."""
    with failures(), client_for(group) as zs:
        answer = zs.delete_deployment(deployment_id)
    console.print(f"deployment {answer.id}: {answer.message or 'deleting'}", highlight=False)


def deployments(
    status: Annotated[str | None, typer.Option(help="Only deployments with this status, e.g. RUNNING.")] = None,
    group: GroupOption = None,
) -> None:
    """List the deployments with their status, replicas and URL."""
    with failures(), client_for(group) as zs:
        found = zs.deployments(status=status.upper() if status else None)
    table = Table("ID", "STATUS", "REPLICAS", "EXECUTABLE", "URL", "MODIFIED", box=None, header_style="bold",
                  pad_edge=False)
    for deployment in sorted(found, key=lambda d: d.created_at or datetime.min.replace(tzinfo=UTC)):
        replicas = deployment.running_replicas
        status_text = styled(deployment.status) + (f" ({deployment.reason})" if deployment.reason else "")
        table.add_row(deployment.id, status_text, "" if replicas is None else str(replicas),
                      deployment.executable_id or "", deployment.deployment_url or "", when(deployment.modified_at))
    console.print(table, soft_wrap=True)
