"""The CLI's habits, as a user meets them against a real embedded zeroserve: profiles that make it work
from any directory, -o json|yaml, `apply -f` (idempotent, with a dry run), your own model from any
path (uploaded into the group's own area), and errors that say what to do.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import token_for
from typer.testing import CliRunner, Result

from zeroserve.cli import app
from zeroserve.cli.profiles import config_path, remember
from zeroserve.cli.uploads import packed_bytes
from zeroserve.settings import Settings

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "iris.yaml"


def cli(config_home: Path, *args: str, **env: str) -> Result:
    """The CLI with only a per-user config to go by: no ZEROSERVE_DATA_DIR, as from any directory."""
    environment = {"XDG_CONFIG_HOME": str(config_home), "ZEROSERVE_DATA_DIR": None, "COLUMNS": "250",
                   "NO_COLOR": "1", **env}
    return CliRunner().invoke(app, list(args), env=environment, catch_exceptions=False)  # type: ignore[arg-type]


@pytest.fixture
def config_home(zeroserve, tmp_path) -> Path:
    """A per-user config with the profile `zeroserve up` writes for this zeroserve."""
    home = tmp_path / "config"
    settings = Settings(xdg_config_home=home)
    remember(settings, "local", zeroserve.url, zeroserve.settings.data_dir / "credentials.json")
    return home


async def test_apply_deploys_the_example_again_changes_nothing_and_dry_run_prints_the_inference_service(
        zeroserve, config_home, tmp_path):
    async def run(*args: str) -> Result:
        return await asyncio.to_thread(cli, config_home, *args)

    dry = await run("apply", "-f", str(EXAMPLE), "--dry-run")
    assert dry.exit_code == 0, dry.output
    isvc = yaml.safe_load(dry.stdout.split("---\n", 1)[1])
    assert isvc["kind"] == "InferenceService" and isvc["metadata"]["namespace"] == "default"
    storage = isvc["spec"]["predictor"]["model"]["storageUri"]
    uploads = (zeroserve.settings.data_dir / "uploads" / "default").resolve()
    assert storage.startswith(uploads.as_uri() + "/"), storage
    assert "deployment/iris would be created (dry run)" in dry.stderr
    assert json.loads((await run("artifacts", "-o", "json")).stdout) == []  # nothing registered

    first = await run("apply", "-f", str(EXAMPLE), "--wait", "--timeout", "60")
    assert first.exit_code == 0, first.output
    assert "artifact/iris-model created" in first.stdout and "deployment/iris created" in first.stdout
    again = await run("apply", "-f", str(EXAMPLE))
    assert again.exit_code == 0, again.output
    assert [line.split()[1] for line in again.stdout.splitlines()] == ["unchanged"] * 3, again.stdout

    listed = json.loads((await run("deployments", "-o", "json")).stdout)
    assert [(d["configurationName"], d["status"]) for d in listed] == [("iris", "RUNNING")]
    shown = yaml.safe_load((await run("status", "iris", "-o", "yaml")).stdout)
    assert shown["id"] == listed[0]["id"] and shown["deploymentUrl"].endswith(listed[0]["id"])
    tail = await run("logs", "iris", "--tail", "1", "--since", "1h")
    assert tail.exit_code == 0 and len(tail.stdout.splitlines()) == 1, tail.output
    plans = yaml.safe_load((await run("plans", "-o", "yaml")).stdout)
    assert plans["starter"]["cpu"] == 1 and plans["starter"]["memory"] == "3G"

    # From another directory, as an installed command: the profile says where zeroserve is.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ZEROSERVE_")}
    environment |= {"XDG_CONFIG_HOME": str(config_home), "PYTHONPATH": os.pathsep.join(sys.path)}
    process = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "zeroserve.cli", "deployments", "-o",
                                                       "json"], cwd=elsewhere, env=environment, capture_output=True,
                                      text=True, timeout=60)
    assert process.returncode == 0, process.stderr
    assert [d["id"] for d in json.loads(process.stdout)] == [listed[0]["id"]]


async def test_a_model_from_any_path_is_uploaded_into_the_groups_own_area_and_no_other_group_reaches_it(
        zeroserve, config_home, tmp_path):
    model = tmp_path / "home" / "my model"
    model.mkdir(parents=True)
    (model / "model.onnx").write_bytes((EXAMPLE.parent / "iris" / "model.onnx").read_bytes())
    deployed = await asyncio.to_thread(cli, config_home, "deploy", str(model), "-e", "onnx", "--name", "mine",
                                       "--no-wait")
    assert deployed.exit_code == 0, deployed.output
    assert "(name mine)" in deployed.stdout
    artifact = json.loads((await asyncio.to_thread(cli, config_home, "artifacts", "-o", "json")).stdout)[0]
    own = (zeroserve.settings.data_dir / "uploads" / "default").resolve()
    assert artifact["name"] == "mine" and artifact["url"].startswith(own.as_uri())

    other = await token_for(zeroserve, ["team-b"])
    async with httpx.AsyncClient(base_url=zeroserve.url, headers={"Authorization": f"Bearer {other}",
                                                                  "AI-Resource-Group": "team-b"}) as http:
        def register(url: str):
            return http.post("/v2/lm/artifacts", json={"name": "x", "kind": "model", "url": url,
                                                       "scenarioId": "model-serving"})

        stolen = await register(artifact["url"])
        assert stolen.status_code == 400 and "another resource group's uploads" in stolen.text, stolen.text
        outside = await register(model.as_uri())
        assert outside.status_code == 400 and "ZEROSERVE_FILE_ROOTS" in outside.text, outside.text
        keys = await register(zeroserve.settings.data_dir.resolve().as_uri())
        assert keys.status_code == 400 and "zeroserve's own files" in keys.text, keys.text
        # The same files upload to the same place; a tar that climbs out is refused.
        again = await http.post("/v2/uploads", content=packed_bytes(model),
                                headers={"Content-Type": "application/x-tar"})
        assert again.status_code == 200 and again.json()["url"].startswith(
            (zeroserve.settings.data_dir / "uploads" / "team-b").resolve().as_uri())
        climbing = io.BytesIO()
        with tarfile.open(fileobj=climbing, mode="w:") as tar:
            entry = tarfile.TarInfo("../../escape.txt")
            entry.size = 2
            tar.addfile(entry, io.BytesIO(b"hi"))
        refused = await http.post("/v2/uploads", content=climbing.getvalue(),
                                  headers={"Content-Type": "application/x-tar"})
        assert refused.status_code == 400 and "escape.txt" in refused.text, refused.text
    assert not (zeroserve.settings.data_dir / "escape.txt").exists()


def test_profiles_are_listed_chosen_and_kept_for_this_user_only(tmp_path):
    home = tmp_path / "config"
    settings = Settings(xdg_config_home=home)
    remember(settings, "local", "http://127.0.0.1:8700", tmp_path / "a" / "credentials.json")
    remember(settings, "lab", "https://zeroserve.lab.example", tmp_path / "b" / "credentials.json")
    path = config_path(settings)
    assert path == home / "zeroserve" / "config.yaml" and stat.S_IMODE(path.stat().st_mode) == 0o600
    listed = json.loads(cli(home, "profiles", "list", "-o", "json").stdout)
    assert [(p["name"], p["current"]) for p in listed] == [("local", True), ("lab", False)]
    assert cli(home, "profiles", "use", "lab").exit_code == 0
    shown = json.loads(cli(home, "profiles", "show", "-o", "json").stdout)
    assert shown["url"] == "https://zeroserve.lab.example" and "profile lab" in shown["from"]["url"]
    # Flags beat the environment, which beats the profile.
    flagged = json.loads(cli(home, "--url", "http://flag:1", "profiles", "show", "-o", "json",
                             ZEROSERVE_API_URL="http://env:1").stdout)
    assert flagged["url"] == "http://flag:1"
    from_env = json.loads(cli(home, "profiles", "show", "-o", "json", ZEROSERVE_API_URL="http://env:1").stdout)
    assert from_env["url"] == "http://env:1" and from_env["from"]["url"] == "environment"
    unknown = cli(home, "--profile", "nope", "deployments")
    assert unknown.exit_code == 2 and "no" in unknown.stderr and "lab, local" in unknown.stderr
    nothing = cli(tmp_path / "empty", "deployments", HOME=str(tmp_path))
    assert nothing.exit_code == 1
    assert "run `zeroserve up`, or pass --url / --profile, or set ZEROSERVE_API_URL" in nothing.stderr
    assert cli(home, "--version").stdout.startswith("zeroserve ")


def test_apply_names_what_is_wrong_in_the_file(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: zeroserve.io/v1\nkind: Configuration\nmetadata: {name: c}\n"
                      "spec: {executable: sklearn, artifacts: {model: missing-artifact}}\n")
    result = cli(tmp_path, "apply", "-f", str(broken))
    assert result.exit_code == 2 and "binds artifact 'missing-artifact'" in result.stderr, result.output
    typo = tmp_path / "typo.yaml"
    typo.write_text("apiVersion: zeroserve.io/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {tll: 1d}\n")
    result = cli(tmp_path, "apply", "-f", str(typo))
    assert result.exit_code == 2 and "document 1: tll" in result.stderr, result.output


def test_a_watched_list_prints_the_list_then_each_new_changed_or_gone_record_once():
    from zeroserve.cli.listing import Listing, watch_list
    from zeroserve.cli.output import Format, console

    reads = iter([[{"id": "a", "status": "PENDING"}],
                  [{"id": "a", "status": "PENDING"}, {"id": "b", "status": "PENDING"}],
                  [{"id": "b", "status": "RUNNING"}]])

    def read() -> list[dict[str, str]]:
        try:
            return next(reads)
        except StopIteration:
            raise KeyboardInterrupt from None  # as Ctrl-C: the watch ends quietly

    listing = Listing[dict[str, str]](["ID", "STATUS"], lambda d: [d["id"], d["status"]], lambda d: d["id"])
    with console.capture() as shown:
        watch_list(read, listing, Format.table, interval=0)
    assert [line.split() for line in shown.get().splitlines()] == [
        ["ID", "STATUS"], ["a", "PENDING"], ["b", "PENDING"], ["b", "RUNNING"], ["a", "(gone)"]]
