"""What the commands print: the two consoles, the status colours and times of tables and panels,
a read as a table, JSON or YAML (``-o``), and the one-line failures with their exit codes (2 when
the input is wrong, 1 when a call failed), never a traceback.
"""

from __future__ import annotations

import contextlib
import enum
import json
import shlex
import shutil
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from zeroserve.client import ApiError
from zeroserve.errors import ZeroserveError

console = Console()
err = Console(stderr=True)



class Format(enum.StrEnum):
    """How a read is printed: a table for people, JSON or YAML (the API's camelCase fields) for programs."""

    table = "table"
    json = "json"
    yaml = "yaml"


OutputOption = Annotated[Format, typer.Option("--output", "-o", help="table, json or yaml.")]

STATUS_STYLE = {"RUNNING": "green", "DEAD": "red", "PENDING": "yellow", "UNKNOWN": "yellow",
                "STOPPING": "magenta", "STOPPED": "dim"}


@contextlib.contextmanager
def failures() -> Iterator[None]:
    """One line on stderr and an exit code for whatever goes wrong: 2 for bad input, 1 otherwise."""
    try:
        yield
    except ApiError as error:
        err.print(f"[red]{escape(error.code)}[/red]: {escape(error.message)}", highlight=False, soft_wrap=True)
        raise typer.Exit(2 if error.status == 400 else 1) from None
    except ValidationError as error:  # an answer or an input that does not parse (settings: see options.settings)
        err.print(f"[red]invalid {escape(error.title)}:[/red] {escape(problems(error))}", highlight=False,
                  soft_wrap=True)
        raise typer.Exit(2) from None
    except ZeroserveError as error:
        err.print(f"[red]{escape(error.reason)}[/red]: {escape(error.message)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def problems(error: ValidationError, variables: bool = False) -> str:
    """Where and why, never the value given: a bad setting may be a secret (a webhook's, a key).
    ``variables``: name a setting as its environment variable (``ZEROSERVE_WEBHOOKS.s3.secret``)."""
    found = []
    for problem in error.errors(include_input=False, include_url=False):
        where = [str(part) for part in problem["loc"]] or ["(the whole)"]
        if variables and not where[0].isupper():  # an upper-case one is its variable already (OTEL_*, XDG_*)
            where[0] = f"ZEROSERVE_{where[0].upper()}"
        found.append(f"{'.'.join(where)}: {problem['msg']}")
    return "; ".join(found)


def bad_input(message: str) -> typer.Exit:
    err.print(f"[red]{escape(message)}[/red]", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def styled(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def status_grid(status: str, reason: str | None, message: str | None) -> Table:
    """The two-column grid a deployment is shown in, opened with its status, reason and message."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    grid.add_row("status", styled(status) + (f"  {escape(reason)}" if reason else ""))
    if message:
        grid.add_row("", escape(message))
    return grid


def self_command() -> str:
    """How this shell can run zeroserve again: the installed command, or this Python with -m."""
    launched_as = Path(sys.argv[0])
    if launched_as.name == "zeroserve":
        return shlex.quote(str(launched_as))
    return "zeroserve" if shutil.which("zeroserve") else f"{shlex.quote(sys.executable)} -m zeroserve.cli"


def plain(value: Any) -> Any:
    """A record (or list of them) as the API writes it: camelCase fields, times as text."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


def printed(value: Any, table: Any, output: Format) -> None:
    """Print a read: ``table`` (a rich renderable) for people, ``value`` as JSON or YAML for programs."""
    if output == Format.json:
        typer.echo(json.dumps(plain(value), indent=2))
    elif output == Format.yaml:
        typer.echo(yaml.safe_dump(plain(value), sort_keys=False, allow_unicode=True), nl=False)
    else:
        console.print(table, soft_wrap=True)
