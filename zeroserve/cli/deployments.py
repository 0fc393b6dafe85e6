"""The commands on deployments that exist: ``status`` (optionally watched until it settles),
``logs`` (optionally followed, from a moment or the last lines), ``predict``, ``stop``, ``delete`` and
``deployments``, the list (optionally watched). A deployment is named by its id, or by its name: the
name of the configuration it runs, as ``deploy --name`` and ``apply`` give it.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.panel import Panel

from zeroserve.cli.listing import Listing, WatchOption, listed
from zeroserve.cli.options import GroupOption, client_for, json_argument
from zeroserve.cli.output import Format, OutputOption, bad_input, console, failures, printed, status_grid, styled, when
from zeroserve.cli.watch import settled_or_exit, watch_deployment
from zeroserve.client import ApiError, Client, Deployment, LogRecord

# --since: a duration (30s, 15m, 2h, 1d) back from now.
DURATION = re.compile(r"^(\d+)([smhd])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def deployment_id_of(zs: Client, given: str) -> str:
    """The id of the deployment ``given`` names: its id, else the one deployment of that name (its
    configuration's), the newest that is not stopped or dead when there are several."""
    try:
        return zs.deployment(given).id
    except ApiError as error:
        if error.status != 404:
            raise
        named = [d for d in zs.deployments() if d.configuration_name == given]
        if not named:
            raise
    live = [d for d in named if d.status not in ("STOPPED", "DEAD")] or named
    live.sort(key=lambda d: d.created_at or datetime.min.replace(tzinfo=UTC), reverse=True)
    return live[0].id


def status(
    deployment_id: Annotated[str, typer.Argument(help="The deployment id or name.")],
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Follow it until it settles.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to watch at most.")] = 600,
    group: GroupOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Show a deployment (by id or name): status (with the reason when DEAD: exit code 1), replicas, URL."""
    with failures(), client_for(group) as zs:
        deployment_id = deployment_id_of(zs, deployment_id)
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
    printed(deployment, Panel(grid, title=f"deployment {deployment_id}", expand=False), output)
    if deployment.status == "DEAD":
        raise typer.Exit(1)


def logs(
    deployment_id: Annotated[str, typer.Argument(help="The deployment id or name.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines (Ctrl-C ends).")] = False,
    since: Annotated[str | None, typer.Option(
        help="From this long ago (30s, 15m, 2h, 1d) or this moment (RFC 3339); default: the last hour.")] = None,
    tail: Annotated[int | None, typer.Option("--tail", "--top", help="Only the last N lines.")] = None,
    group: GroupOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Print a deployment's log: the control plane's and the model servers' lines, kept after replicas are gone."""
    start = _since(since)
    if follow and output != Format.table:
        raise bad_input("--follow prints lines as they come: not with -o json or yaml")
    with failures(), client_for(group) as zs:
        deployment_id = deployment_id_of(zs, deployment_id)
        if not follow:
            found = _log_records(zs, deployment_id, start, tail)
            if output != Format.table:
                printed(found, None, output)
                return
            for record in found:
                _log_line(record.timestamp, record.source, record.msg)
            return
        # The stream opens first, so no line falls between the read and the follow.
        with zs.deployment_events(deployment_id) as events:
            seen = set()
            for record in _log_records(zs, deployment_id, start, tail):
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


def _since(since: str | None) -> datetime | None:
    if since is None:
        return None
    if (found := DURATION.match(since.strip())) is not None:
        return datetime.now(UTC) - timedelta(**{UNITS[found[2]]: int(found[1])})
    try:
        moment = datetime.fromisoformat(since)
    except ValueError:
        raise bad_input(f"--since {since!r} is neither a duration (30s, 15m, 2h, 1d) nor a moment "
                        "(2026-01-31T12:00:00Z)") from None
    return moment if moment.tzinfo else moment.astimezone()


def _log_records(zs: Client, deployment_id: str, start: datetime | None, tail: int | None) -> list[LogRecord]:
    if tail is None:
        return zs.deployment_logs(deployment_id, start=start)
    # The last N: the newest first from the API, printed oldest first.
    return list(reversed(zs.deployment_logs(deployment_id, start=start, top=tail, order="desc")))


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _log_line(moment: datetime | None, source: str | None, message: str) -> None:
    stamp = moment.astimezone().isoformat(timespec="milliseconds") if moment else "-"
    typer.echo(f"{stamp} {source or '-'} {message}")


def predict(
    deployment_id: Annotated[str, typer.Argument(help="The deployment id or name.")],
    data: Annotated[str, typer.Option("--data", "-d", help="The request: JSON, or @file with JSON in it.")],
    v2: Annotated[bool, typer.Option("--v2", help="Open Inference Protocol (V2 /infer) instead of V1 :predict.")]
    = False,
    model: Annotated[str | None, typer.Option(help="The model name (default: the deployment id).")] = None,
    group: GroupOption = None,
) -> None:
    """Call a deployed model (a deployment at zero starts a replica for it) and print the answer."""
    payload = json_argument(data, "--data")
    with failures(), client_for(group) as zs:
        deployment_id = deployment_id_of(zs, deployment_id)
        answer = zs.predict(deployment_id, payload, protocol="v2" if v2 else "v1", model=model)
    typer.echo(json.dumps(answer, indent=2))


def stop(deployment_id: Annotated[str, typer.Argument(help="The deployment id or name.")],
         group: GroupOption = None) -> None:
    """Stop a deployment: every replica is released; the record, its logs and its URL stay."""
    with failures(), client_for(group) as zs:
        answer = zs.stop_deployment(deployment_id_of(zs, deployment_id))
    console.print(f"deployment {answer.id}: {answer.message or 'stopping'}", highlight=False)


def delete(deployment_id: Annotated[str, typer.Argument(help="The deployment id or name.")],
           group: GroupOption = None) -> None:
    """Delete a stopped or dead deployment."""
    with failures(), client_for(group) as zs:
        answer = zs.delete_deployment(deployment_id_of(zs, deployment_id))
    console.print(f"deployment {answer.id}: {answer.message or 'deleting'}", highlight=False)


def _deployment_cells(deployment: Deployment) -> list[str]:
    replicas = deployment.running_replicas
    status_text = styled(deployment.status) + (f" ({deployment.reason})" if deployment.reason else "")
    return [deployment.id, deployment.configuration_name or "", status_text, "" if replicas is None else str(replicas),
            deployment.executable_id or "", deployment.deployment_url or "", when(deployment.modified_at)]


DEPLOYMENTS = Listing[Deployment](["ID", "NAME", "STATUS", "REPLICAS", "EXECUTABLE", "URL", "MODIFIED"],
                                  _deployment_cells, lambda deployment: deployment.id)


def deployments(
    status: Annotated[str | None, typer.Option(help="Only deployments with this status, e.g. RUNNING.")] = None,
    watch: WatchOption = False,
    group: GroupOption = None,
    output: OutputOption = Format.table,
) -> None:
    """List the deployments with their name, status, replicas and URL."""
    with failures(), client_for(group) as zs:
        def read() -> list[Deployment]:
            found = zs.deployments(status=status.upper() if status else None)
            return sorted(found, key=lambda d: d.created_at or datetime.min.replace(tzinfo=UTC))

        listed(read, DEPLOYMENTS, output, watch)
