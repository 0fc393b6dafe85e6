"""What the commands take in beyond their own arguments: the resource group option, JSON given
inline or as ``@file``, the settings from the environment, and the API client those settings name
(``ZEROSERVE_API_URL`` and credentials, else what a local ``zeroserve up`` wrote to its data directory).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape

from zeroserve.cli.output import bad_input, err, problems
from zeroserve.client import Client
from zeroserve.settings import Settings

GroupOption = Annotated[str | None, typer.Option(
    "--group", "-g", help="The resource group (default: ZEROSERVE_RESOURCE_GROUP, else default).")]


def load_settings() -> Settings:
    """The settings from the environment, or one line naming each bad variable and exit code 2."""
    try:
        return Settings()
    except ValidationError as error:
        err.print(f"[red]invalid settings:[/red] {escape(problems(error, variables=True))}", highlight=False,
                  soft_wrap=True)
        raise typer.Exit(2) from None


def client_for(group: str | None) -> Client:
    found = load_settings()
    return Client.local(found, group=group or found.resource_group)


def json_argument(value: str, option: str) -> Any:
    """JSON given inline or as @file, as curl's -d takes it."""
    try:
        text = Path(value[1:]).read_text() if value.startswith("@") else value
        return json.loads(text)
    except OSError as error:
        raise bad_input(f"cannot read {value[1:]}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise bad_input(f"{option} is not JSON: {error}") from None
