"""Every shell and Python example of README.md and docs/*.md, run against a real zeroserve, so that
the docs cannot drift from what zeroserve does.

The convention, for whoever writes an example:

- Fenced blocks tagged ``sh``, ``bash``, ``console`` or ``python`` are run; any other tag (``yaml``,
  ``json``, ``text``, ``mermaid``, none) is not. Every ``docs/*.md`` is read: a new page needs no
  registration here.
- A block that must not run here is marked by an HTML comment on the line before its fence (blank
  lines between are allowed): ``<!-- not run: <reason> -->``. The reason is required (a mark without
  one fails): a command for a cluster (``kubectl``, ``skaffold``), one that never returns
  (``zeroserve up``, ``--watch``, ``-f``), or one that starts the test suite itself.
- The environment is the one ``make run`` leaves: the working directory holds the data directory
  ``.zeroserve/`` of a running ``zeroserve up --demo`` (the iris demo deployment ``iris`` RUNNING, its
  model in ``.zeroserve/demo/iris``) and the repository's ``schemathesis.toml``, as the repository's root
  does; ``.venv`` is the virtual environment zeroserve is installed in,
  and its ``bin`` is first on ``PATH`` (``zeroserve`` and ``python`` are its own). The gateway answers
  at ``http://127.0.0.1:8700`` in the docs; the test's own address (a free port) replaces that text
  in each block before it runs.
- The blocks of one file run in order. Shell blocks (``sh``, ``bash``, ``console``) share one shell
  session: variables a block sets (``TOKEN``, ``H``, ``ID``) are set in the next. Each runs under
  ``set -eo pipefail``, and ``curl`` fails on an HTTP error status (``--fail-with-body``), so an
  example that gets a 4xx or 5xx fails. In a ``console`` block the lines that start with ``$ `` are
  the commands (with the lines that continue them: an open quote or a trailing ``\\``); the other
  lines are output and are not compared (ids and times differ from run to run).
- A Python block runs in a fresh interpreter of that environment, on its own.

A failing block is reported by its file and the line of its fence (``README.md:76``), with what it
ran and what it printed. One zeroserve serves every example; the whole run is marked slow.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTED_URL = "http://127.0.0.1:8700"
RUN_TAGS = {"sh": "shell", "bash": "shell", "console": "console", "python": "python"}
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
NOT_RUN = re.compile(r"^\s*<!--\s*not run\b\s*:?\s*(.*?)\s*-->\s*$")
BLOCK_TIMEOUT_S = 600
# What every shell block starts with: stop at the first failing command, and curl that fails on an
# HTTP error status (while still printing the body, which says why).
SHELL_PRELUDE = """set -eo pipefail
curl() { command curl --fail-with-body "$@"; }
"""


@dataclass(frozen=True)
class Example:
    """One fenced block of a Markdown file."""

    path: Path
    line: int  # of the opening fence, 1-based
    kind: str  # shell, console or python
    text: str
    skip_reason: str | None  # None: it runs

    @property
    def where(self) -> str:
        return f"{shown(self.path)}:{self.line}"


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def examples(path: Path) -> Iterator[Example]:
    """The runnable blocks of one Markdown file, with the ``not run`` mark that precedes each, if any."""
    lines = path.read_text().splitlines()
    index = 0
    mark: str | None = None
    while index < len(lines):
        line = lines[index]
        if (found := NOT_RUN.match(line)) is not None:
            mark = found[1]
            if not mark:
                raise AssertionError(f"{shown(path)}:{index + 1}: a 'not run' mark needs a reason: "
                                     "<!-- not run: why -->")
            index += 1
            continue
        fence = FENCE.match(line)
        if fence is None:
            if line.strip():
                mark = None  # a mark belongs to the block right after it
            index += 1
            continue
        indent, ticks, tag = fence[1], fence[2], fence[3].lower()
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines) and not lines[index].strip().startswith(ticks):
            body.append(lines[index][len(indent):] if lines[index].startswith(indent) else lines[index])
            index += 1
        index += 1
        if tag in RUN_TAGS:
            yield Example(path, start + 1, RUN_TAGS[tag], "\n".join(body) + "\n", mark)
        mark = None


def console_commands(text: str) -> str:
    """The commands of a console transcript: each ``$ `` line with the lines that continue it."""
    commands: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if current is not None:
            current.append(line)
        elif line.startswith("$ "):
            current = [line[2:]]
        else:
            continue  # output
        command = "\n".join(current)
        if not _incomplete(command):
            commands.append(command)
            current = None
    if current is not None:
        raise AssertionError(f"a console command never ends: {current[0]!r}")
    return "\n".join(commands) + "\n"


def _incomplete(command: str) -> bool:
    if command.endswith("\\"):
        return True
    try:
        shlex.split(command, comments=True)
    except ValueError:  # an open quote: the command goes on on the next line
        return True
    return False


@dataclass
class Environment:
    """Where the examples run: a working directory like the one ``make run`` leaves."""

    directory: Path
    url: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def running() -> Iterator[Environment]:
    """``zeroserve up --demo`` in a fresh directory, on a free port, until the module's tests are done."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="zeroserve-docs-") as name:
        directory = Path(name)
        venv = Path(sys.prefix)
        (directory / ".venv").symlink_to(venv)
        # What the docs run "from the repository's root" reads there: schemathesis' settings.
        (directory / "schemathesis.toml").symlink_to(ROOT / "schemathesis.toml")
        env = {
            **os.environ,
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "ZEROSERVE_GATEWAY_PORT": "0",
            "HF_HUB_OFFLINE": "1",
            # The profile `zeroserve up --demo` writes, and every `zeroserve` command of the docs reads: its own.
            "XDG_CONFIG_HOME": str(directory / "config"),
        }
        for setting in ("ZEROSERVE_DATA_DIR", "ZEROSERVE_API_URL", "ZEROSERVE_TOKEN", "ZEROSERVE_CLIENT_ID",
                        "ZEROSERVE_CLIENT_SECRET", "ZEROSERVE_RESOURCE_GROUP", "ZEROSERVE_PROFILE"):
            env.pop(setting, None)
        log = (directory / "zeroserve-up.log").open("w")
        server = subprocess.Popen([sys.executable, "-m", "zeroserve.cli", "up", "--demo"], cwd=directory, env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            url = _wait_for_demo(directory, server)
            yield Environment(directory, url, env)
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            log.close()


def _wait_for_demo(directory: Path, server: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 300
    output = directory / "zeroserve-up.log"
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"zeroserve up --demo stopped:\n{output.read_text()}")
        if "is RUNNING" in output.read_text() and (directory / ".zeroserve" / "gateway.url").exists():
            return (directory / ".zeroserve" / "gateway.url").read_text().strip()
        time.sleep(0.2)
    raise AssertionError(f"the demo was not RUNNING within 300 s:\n{output.read_text()}")


def run_shell(example: Example, environment: Environment, script: str) -> subprocess.CompletedProcess[str]:
    """One shell block in the file's session: the variables of the blocks before it, then its own."""
    state = environment.directory / f".state-{example.path.name}.sh"
    state.touch()
    block = environment.directory / f"{example.path.name}-line-{example.line}.sh"
    block.write_text(script)
    wrapper = (
        'zs_base=" $(compgen -v | tr "\\n" " ") zs_base zs_name "\n'
        f"source {shlex.quote(str(state))}\n{SHELL_PRELUDE}"
        f"source {shlex.quote(str(block))}\n"
        "set +e\n"
        f'for zs_name in $(compgen -v); do case "$zs_base" in *" $zs_name "*) ;; '
        f'*) declare -p "$zs_name" 2>/dev/null;; esac; done > {shlex.quote(str(state))}.new\n'
        f"mv {shlex.quote(str(state))}.new {shlex.quote(str(state))}\n"
    )
    return subprocess.run(["bash", "--noprofile", "--norc", "-c", wrapper], cwd=environment.directory,
                          env=environment.env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)


def run_python(example: Example, environment: Environment, source: str) -> subprocess.CompletedProcess[str]:
    script = environment.directory / f"{example.path.name}-line-{example.line}.py"
    script.write_text(source)
    return subprocess.run([sys.executable, str(script)], cwd=environment.directory, env=environment.env,
                          capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)


def run(example: Example, environment: Environment) -> None:
    text = example.text.replace(DOCUMENTED_URL, environment.url)
    if example.kind == "python":
        outcome = run_python(example, environment, text)
    else:
        outcome = run_shell(example, environment, console_commands(text) if example.kind == "console" else text)
    if outcome.returncode != 0:
        pytest.fail(f"{example.where}: the {example.kind} example failed (exit {outcome.returncode})\n"
                    f"--- it ran:\n{text}--- it printed:\n{outcome.stdout}{outcome.stderr}", pytrace=False)


@pytest.mark.slow
@pytest.mark.parametrize("document", documents(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_example_of_the_document_runs(document: Path, running: Environment) -> None:
    for example in examples(document):
        if example.skip_reason is None:
            run(example, running)


def test_every_example_is_runnable_or_says_why_not() -> None:
    """Without a zeroserve: each document parses, every mark has its reason, console blocks are whole."""
    found = 0
    for document in documents():
        for example in examples(document):
            found += 1
            if example.kind == "console":
                console_commands(example.text)
    assert found > 0


def test_a_mark_without_a_reason_and_an_unended_console_command_are_refused(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("text\n\n<!-- not run -->\n```sh\nfalse\n```\n")
    with pytest.raises(AssertionError, match=r"page.md:3: a 'not run' mark needs a reason"):
        list(examples(page))
    page.write_text("<!-- not run: a cluster -->\n\n```bash\nkubectl get pods\n```\n```python\nprint(1)\n```\n")
    first, second = examples(page)
    assert (first.skip_reason, first.line, second.skip_reason, second.line) == ("a cluster", 3, None, 6)
    with pytest.raises(AssertionError, match="never ends"):
        console_commands("$ echo 'open\nstill open\n")
    assert console_commands("$ echo 'a\n  b'\na\n  b\n$ true \\\n  --x\noutput\n") == "echo 'a\n  b'\ntrue \\\n  --x\n"
