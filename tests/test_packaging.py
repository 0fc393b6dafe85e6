"""The package as a user installs it: the wheel carries everything `zeroserve up` reads (the functions,
the serving templates, the resource plans, the web console's files), its metadata says what the extras
install, and the wheel installed away from any repository serves the demo from an empty directory. A framework that an
extra installs, when missing, is named with that extra (`zeroserve up`, a torch deployment).

The wheel is built from the files the Dockerfile builds it from, copied out of the repository; the
installed-wheel test installs it without dependencies into a directory first on PYTHONPATH (the
dependencies come from this Python's environment; `make check-install` does the whole of it in a
fresh virtualenv).
"""

from __future__ import annotations

import email
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from processes import kill_tree

from zeroserve.demo import SAMPLE
from zeroserve.events import ArtifactCreated, DeploymentRequested, new_event
from zeroserve.node import Node

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "zeroserve"
# What the wheel is built from (the Dockerfile's build stage copies the same).
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "zeroserve")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "--wheel-dir", str(out), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    [found] = out.glob("zeroserve-*.whl")
    return found


def shipped(*patterns: str) -> set[str]:
    """The repository's files under zeroserve/ that match ``patterns``, as wheel paths."""
    return {path.relative_to(ROOT).as_posix() for pattern in patterns for path in PACKAGE.glob(pattern)}


def test_the_wheel_carries_the_functions_templates_plans_and_typing_marker(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for what, files in (("functions", shipped("functions/*.py")),
                        ("serving templates", shipped("templates/builtin/*.yaml")),
                        ("resource plans", {"zeroserve/templates/resource-plans.yaml"}),
                        ("CRD schemas", shipped("templates/schemas/*.json")),
                        ("py.typed", {"zeroserve/py.typed"}),
                        ("the web console", shipped("console/static/*.*", "console/static/*/*.*"))):
        assert files and files <= names, f"the wheel lacks {what}: {sorted(files - names)}"


def test_the_wheel_metadata_names_its_license_and_what_each_extra_installs(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        metadata = email.message_from_bytes(archive.read("zeroserve-0.1.0.dist-info/METADATA"))
        license_text = archive.read("zeroserve-0.1.0.dist-info/licenses/LICENSE").decode()
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert license_text == (ROOT / "LICENSE").read_text() and "Apache License" in license_text
    assert {"server", "torch", "dev"} <= set(metadata.get_all("Provides-Extra"))
    requires = metadata.get_all("Requires-Dist")
    plain = {re.split(r"[<>=!~;\[ ]", r)[0] for r in requires if "extra ==" not in r}
    # A client user installs little: no platform, no model framework.
    assert "httpx" in plain and "typer" in plain
    assert not plain & {"kserve", "fastapi", "nats-py", "scikit-learn", "torch", "transformers"}, plain
    assert 'fastapi>=0.135; extra == "server"' in requires  # fastapi.sse is new in 0.135
    assert 'torch==2.13.0; extra == "torch"' in requires


def python_for(target: Path, data_dir: Path) -> dict[str, str]:
    """The environment of a process that runs zeroserve from ``target`` (the installed wheel) with this
    Python's dependencies."""
    return {**os.environ, "PYTHONPATH": str(target), "ZEROSERVE_DATA_DIR": str(data_dir),
            "ZEROSERVE_GATEWAY_PORT": "0", "ZEROSERVE_GPUS": "[]", "COLUMNS": "200", "NO_COLOR": "1",
            # `zeroserve up` writes its profile here, not into the real home.
            "XDG_CONFIG_HOME": str(data_dir.parent / "config")}


def run_in(directory: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=directory, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.slow
def test_the_installed_wheel_serves_the_demo_from_an_empty_directory(wheel: Path, tmp_path: Path) -> None:
    target, empty, elsewhere = tmp_path / "site-packages", tmp_path / "empty", tmp_path / "elsewhere"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                                str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    empty.mkdir()
    elsewhere.mkdir()
    env = python_for(target, tmp_path / "data")
    where = run_in(empty, env, "-c", "import zeroserve, zeroserve.settings as s; "
                   "print(zeroserve.__file__); print(s.Settings().templates_dir)")
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(target)) for line in where.stdout.split()), where.stdout
    version = run_in(elsewhere, env, "-m", "zeroserve.cli", "--version")
    assert version.returncode == 0 and re.fullmatch(r"zeroserve \d+\.\d+\.\d+\S*\n", version.stdout), version

    up = subprocess.Popen([sys.executable, "-m", "zeroserve.cli", "up", "--demo"], cwd=empty, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output = printed_until(up, "-d '", timeout=180)
        url = re.search(r"curl -si -X POST (\S+)", output)
        get_token = re.search(r"TOKEN=\$\((.+) token\)", output)
        assert url and get_token and "Deployment iris is RUNNING" in output, output
        token = subprocess.run([*shlex.split(get_token.group(1)), "token"], cwd=elsewhere, env=env,
                               capture_output=True, text=True, timeout=60)
        assert token.returncode == 0, token.stderr
        answer = httpx.post(url.group(1), json=SAMPLE, timeout=60,
                            headers={"Authorization": f"Bearer {token.stdout.strip()}"})
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["predictions"]) == 2
        # The web console, from the installed package's own files, where `up` says it is.
        console = re.search(r"console: (\S+)", output)
        assert console, output
        page = httpx.get(console.group(1), timeout=30)
        module = httpx.get(console.group(1) + "app.js", timeout=30)
        assert page.status_code == 200 and '<script type="module" src="app.js">' in page.text, page.text
        assert module.status_code == 200 and module.headers["Content-Type"].startswith("text/javascript")
        # From another directory, with nothing but the profile `zeroserve up` wrote to say where it runs.
        profile_only = {k: v for k, v in env.items() if k != "ZEROSERVE_DATA_DIR"}
        listed = run_in(elsewhere, profile_only, "-m", "zeroserve.cli", "deployments", "-o", "json")
        assert listed.returncode == 0, listed.stderr
        assert [d["id"] for d in json.loads(listed.stdout)] == ["iris"], listed.stdout
        up.send_signal(signal.SIGINT)
        rest, _ = up.communicate(timeout=60)
        assert up.returncode == 0 and "Traceback" not in output + rest, output + rest
    finally:
        if up.poll() is None:
            kill_tree(up.pid)
            up.wait()
    # Everything zeroserve keeps went to its data directory: the directory it ran in is still empty.
    assert list(empty.iterdir()) == []


def printed_until(process: subprocess.Popen[str], marker: str, timeout: float) -> str:
    """What ``process`` printed up to the first line that contains ``marker``."""
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if marker in line:
            break
    return "".join(lines)


def test_up_without_the_server_extra_says_what_to_install_in_one_line(tmp_path: Path) -> None:
    # As if only `pip install zeroserve` (the client) were installed: the platform's packages are absent.
    hidden = "import sys; sys.modules.update(dict.fromkeys(['kserve', 'nats', 'fastapi']))"
    run = subprocess.run([sys.executable, "-c", f"{hidden}; from zeroserve.cli import app; app()", "up"],
                         cwd=tmp_path, env={**os.environ, "ZEROSERVE_DATA_DIR": str(tmp_path)},
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert run.stderr == "zeroserve up needs the server: pip install 'zeroserve[server]'\n"
    assert not (tmp_path / "nats").exists()


async def test_a_torch_deployment_without_the_torch_extra_is_dead_naming_the_extra(
        zeroserve: Node, listen, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # as if zeroserve[torch] were not installed
    assert zeroserve.platform is not None
    model_dir = zeroserve.settings.data_dir / "sources" / "net"
    model_dir.mkdir(parents=True)
    (model_dir / "model.pt").write_bytes(b"a TorchScript file")
    artifacts = await listen(zeroserve, "zeroserve.default.artifact.status")
    statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
    bus = zeroserve.platform.bus
    artifact = ArtifactCreated(id="tiny-net", name="tiny-net", url=model_dir.as_uri())
    await bus.publish(new_event(artifact, source="/tests"), "default")
    await artifacts.wait_for(lambda e: e["id"] == "tiny-net" and e["status"] == "staged")
    await bus.publish(new_event(DeploymentRequested(id="tiny-net", executable_id="pytorch",
                                                    input_artifacts={"model": "tiny-net"}), source="/tests"), "default")
    dead = await statuses.wait_for(lambda e: e["id"] == "tiny-net" and e["status"] == "DEAD")
    assert dead["reason"] == "RuntimeNotInstalled"
    assert "the pytorch runtime needs torch" in dead["message"]
    assert "pip install 'zeroserve[torch]'" in dead["message"]
