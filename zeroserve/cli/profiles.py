"""The CLI's per-user config: named profiles, each a gateway URL, the credentials file to log in
with and a resource group, in ``$XDG_CONFIG_HOME/zeroserve/config.yaml`` (``~/.config`` when unset;
mode 0600, as it names where secrets lie), one of them current. ``zeroserve up`` writes a profile for
the zeroserve it runs, so the commands work from any directory; ``zeroserve profiles`` lists, shows
and chooses them. The file holds no secret itself: a profile points at a credentials file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from rich.table import Table

from zeroserve.cli.output import Format, OutputOption, bad_input, console, printed
from zeroserve.settings import Settings

# The name `zeroserve up` gives the profile of the zeroserve it runs (unless --profile names another).
LOCAL_PROFILE = "local"

profiles_app = typer.Typer(help="Profiles: which zeroserve the commands talk to (docs/cli.md).",
                           no_args_is_help=True)


class Profile(BaseModel):
    """A gateway, the credentials file to log in with (``client_id``, ``client_secret``), a group."""

    model_config = ConfigDict(extra="forbid")

    url: str
    credentials: Path | None = None
    group: str | None = None


class ProfileFile(BaseModel):
    """The config file: the profiles by name, and the one commands use unless told otherwise."""

    model_config = ConfigDict(extra="forbid")

    current: str | None = None
    profiles: dict[str, Profile] = {}


def config_path(settings: Settings) -> Path:
    """Where the config file is: XDG's config home (``XDG_CONFIG_HOME``, else ``~/.config``)/zeroserve."""
    home = settings.xdg_config_home or Path.home() / ".config"
    return home / "zeroserve" / "config.yaml"


def read_profiles(path: Path) -> ProfileFile:
    """The config file's profiles (none when there is no file), or exit 2 naming what is wrong in it."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ProfileFile()
    except (OSError, yaml.YAMLError) as error:
        raise bad_input(f"cannot read the CLI's config {path}: {error}") from None
    try:
        return ProfileFile.model_validate(document or {})
    except ValidationError as error:
        first = error.errors(include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise bad_input(f"the CLI's config {path} is not valid: {where}: {first['msg']}") from None


def write_profiles(path: Path, config: ProfileFile) -> None:
    """Write the config file whole (a new file renamed over the old), readable by this user only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = yaml.safe_dump(config.model_dump(mode="json", exclude_none=True), sort_keys=False)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(partial, path)


def remember(settings: Settings, name: str, url: str, credentials: Path) -> tuple[Path, bool]:
    """Record profile ``name`` for a zeroserve at ``url``; current if none is. Where, and whether current."""
    path = config_path(settings)
    config = read_profiles(path)
    kept = config.profiles.get(name)
    config.profiles[name] = Profile(url=url, credentials=credentials.resolve(), group=kept.group if kept else None)
    if config.current is None or config.current not in config.profiles:
        config.current = name
    write_profiles(path, config)
    return path, config.current == name


@profiles_app.command("list")
def list_profiles(output: OutputOption = Format.table) -> None:
    """List the profiles; the current one is marked with *."""
    from zeroserve.cli.options import load_settings

    config = read_profiles(config_path(load_settings()))
    rows = [{"name": name, "current": name == config.current, **profile.model_dump(mode="json")}
            for name, profile in config.profiles.items()]
    table = Table("CURRENT", "NAME", "URL", "GROUP", "CREDENTIALS", box=None, header_style="bold", pad_edge=False)
    for row in rows:
        table.add_row("*" if row["current"] else "", row["name"], row["url"], row["group"] or "",
                      row["credentials"] or "")
    printed(rows, table, output)


@profiles_app.command("use")
def use_profile(name: Annotated[str, typer.Argument(help="The profile to make current.")]) -> None:
    """Make a profile the current one: commands use it unless --profile, --url or the environment say otherwise."""
    from zeroserve.cli.options import load_settings

    path = config_path(load_settings())
    config = read_profiles(path)
    if name not in config.profiles:
        raise bad_input(f"no profile {name!r} in {path}; known: {', '.join(sorted(config.profiles)) or 'none'} "
                        "(`zeroserve up` writes one)")
    config.current = name
    write_profiles(path, config)
    console.print(f"profile {name} is current", highlight=False)


@profiles_app.command("show")
def show_profile(
    name: Annotated[str | None, typer.Argument(help="The profile (default: the one in use).")] = None,
    output: OutputOption = Format.table,
) -> None:
    """Show what the commands would use: gateway URL, credentials, group, and where each comes from."""
    from zeroserve.cli.options import chosen_target

    target = chosen_target(profile=name)
    printed(target.view(), target.table(), output)
