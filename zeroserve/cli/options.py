"""What the commands take in beyond their own arguments: the resource group option, JSON given
inline or as ``@file``, the settings from the environment, and the zeroserve to talk to: its gateway
URL, the credentials and the group, each taken from the first of these that gives it (docs/cli.md):

1. the flags: ``--url``, ``--profile``, ``--group``;
2. the environment: ``ZEROSERVE_API_URL``, ``ZEROSERVE_TOKEN`` or ``ZEROSERVE_CLIENT_ID`` +
   ``ZEROSERVE_CLIENT_SECRET``, ``ZEROSERVE_RESOURCE_GROUP``, ``ZEROSERVE_PROFILE``, and
   ``ZEROSERVE_DATA_DIR`` (the ``gateway.url`` and ``credentials.json`` a ``zeroserve up`` wrote there);
3. the current profile of the CLI's config file (``profiles``);
4. the data directory ``zeroserve up`` uses by default, ``.zeroserve`` in this directory.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from zeroserve.cli.output import bad_input, err, problems
from zeroserve.cli.profiles import ProfileFile, config_path, read_profiles
from zeroserve.client import DEFAULT_GROUP, Client
from zeroserve.settings import Settings

GroupOption = Annotated[str | None, typer.Option(
    "--group", "-g", help="The resource group (default: ZEROSERVE_RESOURCE_GROUP, the profile's, else default).")]

# What to do when nothing says which zeroserve to talk to.
HOW_TO_CONNECT = "run `zeroserve up`, or pass --url / --profile, or set ZEROSERVE_API_URL"


@dataclass(frozen=True)
class Chosen:
    """What the global flags (``zeroserve --url ... --profile ...``) chose."""

    url: str | None = None
    profile: str | None = None


# Set by the app's callback before a command runs: what the command was given beyond its own options.
CHOSEN: ContextVar[Chosen] = ContextVar("chosen")


def chosen_flags() -> Chosen:
    return CHOSEN.get(Chosen())


@dataclass
class Source:
    """One place the connection may come from, with what it gives (None: nothing of that)."""

    name: str
    url: str | None = None
    token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    credentials_file: Path | None = None
    group: str | None = None

    @property
    def credentials(self) -> bool:
        return self.token is not None or (self.client_id is not None and self.client_secret is not None) or (
            self.credentials_file is not None)


@dataclass
class Target:
    """The zeroserve the commands talk to, and where each part of it came from."""

    url: str
    group: str
    sources: dict[str, str] = field(default_factory=dict)
    token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    credentials_file: Path | None = None

    def view(self) -> dict[str, Any]:
        return {"url": self.url, "group": self.group,
                "credentials": str(self.credentials_file) if self.credentials_file else
                ("token" if self.token else "client id and secret" if self.client_id else None),
                "from": dict(self.sources)}

    def table(self) -> Table:
        grid = Table.grid(padding=(0, 2))
        for label, value in self.view().items():
            if label != "from":
                grid.add_row(label, str(value or ""), f"({self.sources.get(label, '')})")
        return grid


def load_settings() -> Settings:
    """The settings from the environment, or one line naming each bad variable and exit code 2."""
    try:
        return Settings()
    except ValidationError as error:
        err.print(f"[red]invalid settings:[/red] {escape(problems(error, variables=True))}", highlight=False,
                  soft_wrap=True)
        raise typer.Exit(2) from None


def _profile_source(config: ProfileFile, name: str, path: Path, how: str) -> Source:
    profile = config.profiles.get(name)
    if profile is None:
        raise bad_input(f"{how} names profile {name!r}, which {path} does not have; known: "
                        f"{', '.join(sorted(config.profiles)) or 'none'} (`zeroserve up` writes one)")
    return Source(f"profile {name}", url=profile.url, credentials_file=profile.credentials, group=profile.group)


def _data_dir_source(data_dir: Path, name: str) -> Source:
    url_file = data_dir / "gateway.url"
    credentials = data_dir / "credentials.json"
    return Source(f"{name} {data_dir}", url=url_file.read_text().strip() if url_file.exists() else None,
                  credentials_file=credentials if credentials.exists() else None)


def sources(settings: Settings, flags: Chosen) -> list[Source]:
    """Where the connection may come from, first the strongest (the module's docstring says the order)."""
    path = config_path(settings)
    config = read_profiles(path)
    found = [Source("--url", url=flags.url)]
    if flags.profile:
        found.append(_profile_source(config, flags.profile, path, "--profile"))
    explicit = settings.model_fields_set
    found.append(Source(
        "environment", url=settings.api_url, token=settings.token.get_secret_value() if settings.token else None,
        client_id=settings.client_id,
        client_secret=settings.client_secret.get_secret_value() if settings.client_secret else None,
        group=settings.resource_group if "resource_group" in explicit else None))
    if settings.profile and not flags.profile:
        found.append(_profile_source(config, settings.profile, path, "ZEROSERVE_PROFILE"))
    if "data_dir" in explicit:
        # A data directory named on purpose is that zeroserve, never another one a profile names.
        found.append(_data_dir_source(settings.data_dir, "ZEROSERVE_DATA_DIR"))
        return found
    if not (flags.profile or settings.profile) and config.current in config.profiles:
        assert config.current is not None
        found.append(_profile_source(config, config.current, path, f"the current profile of {path}"))
    found.append(_data_dir_source(settings.data_dir, "the data directory"))
    return found


def chosen_target(profile: str | None = None, group: str | None = None) -> Target:
    """The zeroserve to talk to, or exit 1 saying how to name one."""
    flags = chosen_flags()
    if profile is not None:
        flags = Chosen(flags.url, profile)
    found = sources(load_settings(), flags)
    with_url = next((source for source in found if source.url), None)
    if with_url is None or with_url.url is None:
        err.print(f"[red]NotConfigured[/red]: no zeroserve to talk to: {HOW_TO_CONNECT}", highlight=False,
                  soft_wrap=True)
        raise typer.Exit(1)
    with_credentials = next((source for source in found if source.credentials), None)
    if with_credentials is None:
        err.print(f"[red]NotConfigured[/red]: no credentials for {with_url.url}: set ZEROSERVE_TOKEN, or "
                  "ZEROSERVE_CLIENT_ID and ZEROSERVE_CLIENT_SECRET, or use a profile whose credentials file has "
                  "them (--profile)", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    with_group = next((source for source in found if source.group), None)
    target = Target(url=with_url.url, group=group or (with_group.group if with_group else None) or DEFAULT_GROUP,
                    token=with_credentials.token, client_id=with_credentials.client_id,
                    client_secret=with_credentials.client_secret,
                    credentials_file=with_credentials.credentials_file)
    target.sources = {"url": with_url.name, "credentials": with_credentials.name,
                      "group": "--group" if group else with_group.name if with_group else "the default"}
    return target


def _credentials_file(path: Path) -> tuple[str, str]:
    try:
        known = json.loads(path.read_text())
        return str(known["client_id"]), str(known["client_secret"])
    except FileNotFoundError:
        err.print(f"[red]NotConfigured[/red]: the credentials file {path} is gone (it is written by the "
                  f"`zeroserve up` that uses it): {HOW_TO_CONNECT}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        err.print(f"[red]NotConfigured[/red]: cannot read the credentials file {path} ({error}); it must be "
                  'JSON {"client_id": ..., "client_secret": ...}', highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def client_for(group: str | None) -> Client:
    """A client for the zeroserve the flags, the environment or a profile name (see the module's docstring)."""
    target = chosen_target(group=group)
    client_id, client_secret = target.client_id, target.client_secret
    if target.token is None and client_id is None and target.credentials_file is not None:
        client_id, client_secret = _credentials_file(target.credentials_file)
    return Client(target.url, token=target.token, client_id=client_id, client_secret=client_secret,
                  group=target.group)


def json_argument(value: str, option: str) -> Any:
    """JSON given inline or as @file, as curl's -d takes it."""
    try:
        text = Path(value[1:]).read_text() if value.startswith("@") else value
        return json.loads(text)
    except OSError as error:
        raise bad_input(f"cannot read {value[1:]}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise bad_input(f"{option} is not JSON: {error}") from None
