"""The live panel of a deployment that ``deploy`` and ``status --watch`` show: its record, then its
status and log events as they come (or the record read every half second where the event stream is
refused), until it settles (RUNNING, STOPPED, DEAD) or the time is up.
"""

from __future__ import annotations

import collections
import time

import typer
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel

from zeroserve.cli.output import console, err, status_grid
from zeroserve.client import ApiError, Client, Deployment, Event

# Statuses a deployment stays in until someone acts: watching ends there.
SETTLED = {"RUNNING", "STOPPED", "DEAD"}


class DeploymentView:
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
        grid = status_grid(self.status, self.reason, self.message)
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


def watch_deployment(zs: Client, deployment_id: str, timeout: float) -> DeploymentView:
    """Show the deployment live until it settles (RUNNING, STOPPED, DEAD) or ``timeout`` passes."""
    view = DeploymentView(deployment_id)
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


def _poll(zs: Client, view: DeploymentView, live: Live, deadline: float) -> DeploymentView:
    while not view.settled and time.monotonic() < deadline:
        time.sleep(0.5)
        view.show(zs.deployment(view.id))
        live.update(view.render())
    return view


def settled_or_exit(view: DeploymentView, timeout: float) -> None:
    if view.status == "DEAD":
        why = f"{view.reason}: {view.message}" if view.reason else (view.message or "no reason given")
        err.print(f"[red]deployment {view.id} is DEAD[/red]: {escape(why)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if not view.settled:
        err.print(f"[red]deployment {view.id} is still {view.status} after {timeout:g} s[/red]; follow it with "
                  f"`zeroserve status {view.id} --watch`", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
