"""One revision of a git repository, read for its serving templates: the commit it resolves to and
the YAML files directly under a path. The ``git`` command line does the work (in asyncio
subprocesses, nothing on the event loop), into a scratch bare repository that is removed afterwards:
only the one commit is fetched (``--depth 1``), and no work tree is written.

Credentials reach git through a credential helper set in git's environment (``GIT_CONFIG_*``), which
git hands only to the host it asks: never on a command line (``ps`` shows those) and never in a
log line or an error message (git's own words are scrubbed of them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from zeroserve.errors import ZeroserveError
from zeroserve.redaction import redact

# What a repository URL may be: zeroserve's git reads these transports and no other (git's ext:: runs
# commands; a "URL" starting with '-' would be an option).
SCHEMES = ("https", "http", "ssh", "git", "file")
# The forms the API's schema states (a URL of those transports, or an absolute path; a ref name or commit).
URL_PATTERN = r"^(/|(https?|ssh|git|file)://)"
REVISION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/^~@{}-]{0,254}$"
_URL = re.compile(URL_PATTERN)
_REVISION = re.compile(REVISION_PATTERN)
TEMPLATE_SUFFIXES = (".yaml", ".yml")
_USERINFO = re.compile(r"(://[^/\s:@]*):[^/\s@]*@")


class RepositoryUnreachable(ZeroserveError):
    """git could not fetch the revision: the URL, the credentials or the revision is wrong, or the
    host cannot be reached."""

    reason = "RepositoryUnreachable"


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = field(default="", repr=False)


@dataclass(frozen=True)
class Revision:
    """What a revision holds under a path: its commit, and each template file's text by its path."""

    commit: str
    files: dict[str, str]


async def read_revision(
    url: str, revision: str, path: str, *, credentials: Credentials | None = None, timeout_s: float = 120.0,
) -> Revision:
    """The commit ``revision`` names in ``url`` and the ``*.yaml``/``*.yml`` files directly under ``path``."""
    if not _URL.match(url) or not _REVISION.match(revision):  # the API refuses them first; git never sees one
        raise RepositoryUnreachable(f"{redact(url)!r} at {revision[:80]!r} is not a repository URL and revision "
                                    f"zeroserve reads ({', '.join(SCHEMES)}, or an absolute path)")
    scratch = Path(tempfile.mkdtemp(prefix="zeroserve-git-"))
    git = _Git(scratch, credentials or Credentials(), timeout_s)
    try:
        await git("init", "--bare", "--quiet", str(scratch))
        await git("fetch", "--depth", "1", "--no-tags", "--quiet", "--end-of-options", url, revision)
        commit = (await git("rev-parse", "--verify", "FETCH_HEAD^{commit}")).strip()
        folder = "/".join(part for part in PurePosixPath(path).parts if part not in ("/", "."))
        tree = f"{commit}:{folder}" if folder else f"{commit}:"
        try:
            listing = await git("ls-tree", "-z", "--end-of-options", tree)
        except RepositoryUnreachable as error:
            raise RepositoryUnreachable(f"revision {revision} ({commit[:12]}) has no folder {path!r}") from error
        files = {}
        for entry in filter(None, listing.split("\0")):
            kind_part, _, name = entry.partition("\t")
            if kind_part.split()[1] == "blob" and name.endswith(TEMPLATE_SUFFIXES):
                file = f"{folder}/{name}" if folder else name
                files[file] = await git("cat-file", "blob", f"{commit}:{file}")
        return Revision(commit=commit, files=files)
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, True)


class _Git:
    """git run in one scratch repository, with the credentials in its environment only."""

    def __init__(self, scratch: Path, credentials: Credentials, timeout_s: float) -> None:
        self.scratch = scratch
        self.credentials = credentials
        self.timeout_s = timeout_s

    def environment(self) -> dict[str, str]:
        keep = {name: value for name, value in os.environ.items()
                if name in ("PATH", "HOME", "LANG", "SSL_CERT_FILE", "SSL_CERT_DIR", "HTTPS_PROXY", "HTTP_PROXY",
                            "NO_PROXY", "https_proxy", "http_proxy", "no_proxy")}
        # Never a prompt (a process with no terminal would wait for ever); no user or system config whose
        # helpers or rewrites would change where git goes or what it sends.
        environment = {**keep, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1",
                       "GIT_CONFIG_GLOBAL": os.devnull, "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
                       "GIT_DIR": str(self.scratch), "GIT_CONFIG_COUNT": "2",
                       "GIT_CONFIG_KEY_0": "credential.helper", "GIT_CONFIG_VALUE_0": "",
                       "GIT_CONFIG_KEY_1": "credential.helper", "GIT_CONFIG_VALUE_1": ""}
        if self.credentials.username or self.credentials.password:
            # git asks the helper for the host it is about to send them to; the values stay in this environment.
            environment["GIT_CONFIG_VALUE_1"] = (
                '!f() { test "$1" = get && echo "username=$ZEROSERVE_GIT_USERNAME" '
                '&& echo "password=$ZEROSERVE_GIT_PASSWORD"; }; f')
            environment["ZEROSERVE_GIT_USERNAME"] = self.credentials.username
            environment["ZEROSERVE_GIT_PASSWORD"] = self.credentials.password
        return environment

    async def __call__(self, *arguments: str) -> str:
        try:
            process = await asyncio.create_subprocess_exec(
                "git", *arguments, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=self.environment(), cwd=self.scratch)
        except FileNotFoundError:
            raise RepositoryUnreachable("git is not installed where zeroserve runs: install it (the gateway "
                                        "syncs templates with the git command)") from None
        try:
            out, err = await asyncio.wait_for(process.communicate(), self.timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise RepositoryUnreachable(f"git {arguments[0]} took longer than {self.timeout_s:g} s "
                                        "(settings.template_sync_timeout_s)") from None
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise
        if process.returncode != 0:
            raise RepositoryUnreachable(f"git {arguments[0]}: {self.scrub(err.decode(errors='replace'))}")
        return out.decode(errors="replace")

    def scrub(self, text: str) -> str:
        """git's words, with no credential in them, on one line."""
        for secret in (self.credentials.password, self.credentials.username):
            if secret:
                text = text.replace(secret, "***")
        text = _USERINFO.sub(r"\1:***@", text)  # a password written into the URL itself
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return " ".join(lines)[:500] or "failed"
