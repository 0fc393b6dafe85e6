"""The commands on serving templates (executables): ``templates list``, ``show``, ``apply -f`` and
``delete`` in a resource group, and, for the operator, the git repositories and applications they
are synced from (``templates repositories ...``, ``templates applications ...``; docs/templates.md).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from zeroserve.cli.options import GroupOption, client_for
from zeroserve.cli.output import bad_input, console, err, failures
from zeroserve.client import Client
from zeroserve.client.calls import Call

templates_app = typer.Typer(help="Serving templates (executables): list, show, apply, and where they come from.",
                            no_args_is_help=True)
repositories_app = typer.Typer(help="Git repositories templates are synced from (admin).", no_args_is_help=True)
applications_app = typer.Typer(help="Applications: a repository's revision and path, synced (admin).",
                               no_args_is_help=True)
templates_app.add_typer(repositories_app, name="repositories")
templates_app.add_typer(applications_app, name="applications")

NameArgument = Annotated[str, typer.Argument(help="The name.")]


def call(zs: Client, method: str, path: str, *, json: Any = None, group: str | None = None) -> Any:
    """One call of the API the client has no operation for, answered as JSON."""
    return zs._send(Call(method, path, lambda response: response.json(), json=json, group=group))


def table(*columns: str) -> Table:
    return Table(*columns, box=None, header_style="bold", pad_edge=False)


@templates_app.command("list")
def list_templates(group: GroupOption = None) -> None:
    """List the templates the group may deploy, and where each comes from."""
    with failures(), client_for(group) as zs:
        found = call(zs, "GET", "/v2/admin/templates", group=zs.group)["resources"]
    shown = table("ID", "SCENARIO", "VERSION", "ORIGIN", "MODIFIED")
    for template in found:
        shown.add_row(template["id"], template["scenarioId"], template["versionId"], template["origin"],
                      template["modifiedAt"][:19].replace("T", " "))
    console.print(shown, soft_wrap=True)


@templates_app.command("show")
def show_template(executable_id: Annotated[str, typer.Argument(help="The executable id.")],
                  group: GroupOption = None) -> None:
    """Show one template's parameters (with their defaults) and artifact inputs."""
    with failures(), client_for(group) as zs:
        found = {t["id"]: t for t in call(zs, "GET", "/v2/admin/templates", group=zs.group)["resources"]}
        if executable_id not in found:
            raise bad_input(f"no template {executable_id} in {zs.group} (zeroserve templates list)")
        scenario = found[executable_id]["scenarioId"]
        executable = call(zs, "GET", f"/v2/lm/scenarios/{scenario}/executables/{executable_id}", group=zs.group)
    console.print(f"[bold]{escape(executable_id)}[/bold] ({escape(executable['name'])}, scenario {escape(scenario)}, "
                  f"version {escape(executable['versionId'])}, {escape(found[executable_id]['origin'])})")
    if executable.get("description"):
        console.print(escape(executable["description"]))
    parameters = table("PARAMETER", "DEFAULT", "DESCRIPTION")
    for parameter in executable["parameters"]:
        parameters.add_row(parameter["name"], parameter.get("default", ""), parameter.get("description", ""))
    console.print(parameters, soft_wrap=True)
    console.print("artifacts: " + (", ".join(a["name"] for a in executable["inputArtifacts"]) or "none"))


@templates_app.command("apply")
def apply_template(
    file: Annotated[Path, typer.Option("--file", "-f", help="A ServingTemplate YAML file.")],
    group: GroupOption = None,
) -> None:
    """Add or replace a template in the group, at once (for local use; a team keeps them in git)."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise bad_input(f"cannot read {file}: {error.strerror}") from None
    with failures(), client_for(group) as zs:
        applied = call(zs, "POST", "/v2/admin/templates", json={"template": text, "file": file.name}, group=zs.group)
    console.print(escape(applied["message"]), highlight=False)


@templates_app.command("delete")
def delete_template(executable_id: Annotated[str, typer.Argument(help="The executable id.")],
                    group: GroupOption = None) -> None:
    """Remove a template applied in the group (deployments keep what they were rendered with)."""
    with failures(), client_for(group) as zs:
        removed = call(zs, "DELETE", f"/v2/admin/templates/{executable_id}", group=zs.group)
    console.print(escape(removed["message"]), highlight=False)


@repositories_app.command("list")
def list_repositories() -> None:
    """List the registered repositories (never their credentials)."""
    with failures(), client_for(None) as zs:
        found = call(zs, "GET", "/v2/admin/repositories")["resources"]
    shown = table("NAME", "URL", "STATUS")
    for repository in found:
        shown.add_row(repository["name"], repository["url"], repository["status"])
    console.print(shown, soft_wrap=True)


@repositories_app.command("add")
def add_repository(
    url: Annotated[str, typer.Argument(help="https://, ssh://, file:// or an absolute path.")],
    name: Annotated[str | None, typer.Option(help="Default: the URL's last part.")] = None,
    username: Annotated[str, typer.Option(help="For a private repository.")] = "",
    password: Annotated[str, typer.Option(envvar="ZEROSERVE_GIT_PASSWORD", show_envvar=True,
                                          help="For a private repository (a token); better from the variable.")] = "",
) -> None:
    """Register a git repository of serving templates."""
    body = {"url": url, "username": username, "password": password, **({"name": name} if name else {})}
    with failures(), client_for(None) as zs:
        created = call(zs, "POST", "/v2/admin/repositories", json=body)
    console.print(f"repository {escape(created['id'])} registered", highlight=False)


@repositories_app.command("delete")
def delete_repository(name: NameArgument) -> None:
    """Remove a repository (refused while an application syncs from it)."""
    with failures(), client_for(None) as zs:
        call(zs, "DELETE", f"/v2/admin/repositories/{name}")
    console.print(f"repository {escape(name)} removed", highlight=False)


@applications_app.command("list")
def list_applications() -> None:
    """List the applications and how their last sync went."""
    with failures(), client_for(None) as zs:
        found = call(zs, "GET", "/v2/admin/applications")["resources"]
        statuses = {a["applicationName"]: call(zs, "GET", f"/v2/admin/applications/{a['applicationName']}/status")
                    for a in found}
    shown = table("NAME", "REPOSITORY", "REVISION", "PATH", "SYNC", "COMMIT")
    for application in found:
        status = statuses[application["applicationName"]]
        shown.add_row(application["applicationName"], application["repositoryUrl"], application["revision"],
                      application["path"], status["syncStatus"], status["source"]["revision"][:12])
    console.print(shown, soft_wrap=True)


@applications_app.command("add")
def add_application(
    repository: Annotated[str, typer.Option(help="The registered repository's name.")],
    path: Annotated[str, typer.Option(help="The folder of the templates in the repository.")] = ".",
    revision: Annotated[str, typer.Option(help="A branch, tag or commit.")] = "HEAD",
    name: Annotated[str | None, typer.Option(help="Default: from the repository and path.")] = None,
) -> None:
    """Create an application: sync a repository's templates (and wait for the first sync)."""
    body = {"repositoryName": repository, "revision": revision, "path": path,
            **({"applicationName": name} if name else {})}
    with failures(), client_for(None) as zs:
        created = call(zs, "POST", "/v2/admin/applications", json=body)
        print_status(zs, created["id"], wait=True)


@applications_app.command("status")
def application_status(name: NameArgument) -> None:
    """Show how an application's last sync went: each template synced, refused (with its line) or removed."""
    with failures(), client_for(None) as zs:
        print_status(zs, name, wait=False)


@applications_app.command("refresh")
def refresh_application(name: NameArgument) -> None:
    """Sync an application now, and show how it went."""
    with failures(), client_for(None) as zs:
        before = call(zs, "GET", f"/v2/admin/applications/{name}/status").get("syncStartedAt")
        call(zs, "POST", f"/v2/admin/applications/{name}/refresh")
        print_status(zs, name, wait=True, after=before)


@applications_app.command("delete")
def delete_application(name: NameArgument) -> None:
    """Delete an application and the templates it synced (deployments keep what they were rendered with)."""
    with failures(), client_for(None) as zs:
        call(zs, "DELETE", f"/v2/admin/applications/{name}")
    console.print(f"application {escape(name)} deleted", highlight=False)


def print_status(zs: Client, name: str, *, wait: bool, after: str | None = None, timeout_s: float = 300) -> None:
    """The application's status, once its sync (one started after ``after``) has ended when ``wait``."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = call(zs, "GET", f"/v2/admin/applications/{name}/status")
        done = status["healthStatus"] != "Progressing" and status.get("syncStartedAt") != after
        if not wait or done or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    console.print(f"[bold]{escape(name)}[/bold]: {status['syncStatus']}, {status['healthStatus']} at "
                  f"{escape(status['source']['revision'][:12])}: {escape(status['message'])}", highlight=False)
    shown = table("TEMPLATE", "FILE", "STATUS", "MESSAGE")
    for resource in status["syncResourcesStatus"]:
        style = "red" if resource["status"] == "SyncFailed" else "green" if resource["status"] == "Synced" else "dim"
        shown.add_row(resource["name"], resource["file"], f"[{style}]{resource['status']}[/]",
                      escape(resource["message"]) if resource["status"] != "Synced" else "")
    console.print(shown, soft_wrap=True)
    if status["syncStatus"] != "Synced":
        err.print("[yellow]not every template synced[/yellow]")

