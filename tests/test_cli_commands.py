"""The `zeroserve` commands built on the client, as a user at a terminal sees them, against a real
embedded zeroserve: tables, the live deploy, one-line errors with exit codes 2 (bad input) and 1.

The typer app runs in-process (in a thread: the embedded gateway shares the test's event loop),
finding the gateway and credentials the way it does after `zeroserve up`: in ZEROSERVE_DATA_DIR.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from zeroserve.cli import app
from zeroserve.client import AsyncClient
from zeroserve.demo import SAMPLE, train_iris
from zeroserve.events import ArtifactCreated, Metric


def run_cli(data_dir: Path, *args: str, **env: str) -> Result:
    environment = {"ZEROSERVE_DATA_DIR": str(data_dir), "COLUMNS": "250", "NO_COLOR": "1", **env}
    return CliRunner().invoke(app, list(args), env=environment, catch_exceptions=False)


@pytest.fixture
def zeroserve_cli(zeroserve) -> Callable[..., object]:
    """``await zeroserve_cli("deployments")`` -> the typer Result, run in a thread."""

    async def invoke(*args: str, **env: str) -> Result:
        return await asyncio.to_thread(run_cli, zeroserve.settings.data_dir, *args, **env)

    return invoke


@pytest.fixture
async def zs(zeroserve):
    async with AsyncClient.local(zeroserve.settings) as client:
        yield client


def model_url(zeroserve, name: str) -> str:
    """A file:// URL inside the allowed roots (the data directory); nothing need be there."""
    return (zeroserve.settings.data_dir / "models-src" / name).resolve().as_uri()


def no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output + (result.stderr if result.stderr_bytes else "")


async def test_artifacts_table_lists_every_registered_model(zeroserve, zeroserve_cli, zs):
    first = await zs.create_artifact("iris", model_url(zeroserve, "iris"))
    second = await zs.create_artifact("wine", model_url(zeroserve, "wine"))
    result = await zeroserve_cli("artifacts")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["ID", "NAME", "KIND", "URL", "CREATED"]
    assert any(line.split()[:4] == [first.id, "iris", "model", model_url(zeroserve, "iris")] for line in lines)
    assert any(line.split()[:4] == [second.id, "wine", "model", model_url(zeroserve, "wine")] for line in lines)


async def test_deployments_table_shows_each_deployment_with_its_status(zeroserve, zeroserve_cli, zs):
    artifact = await zs.create_artifact("gone", model_url(zeroserve, "gone"))
    configuration = await zs.create_configuration("gone", executable_id="sklearn", artifacts={"model": artifact.id})
    created = await zs.create_deployment(configuration.id)
    result = await zeroserve_cli("deployments")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith(created.id))
    assert re.search(r"(UNKNOWN|PENDING|DEAD|RUNNING)", row) and "sklearn" in row


async def test_deploy_of_a_model_that_is_not_there_ends_dead_with_the_reason_and_exit_1(zeroserve, zeroserve_cli):
    missing = model_url(zeroserve, "no-such-model")
    result = await zeroserve_cli("deploy", missing, "--plan", "starter", "--timeout", "60")
    assert result.exit_code == 1, result.output
    assert re.search(r"deployment (d\w+) is DEAD: \w+", result.stderr), result.stderr
    assert "artifact" in result.output and "configuration" in result.output
    no_traceback(result)


async def test_status_shows_a_deployment_and_watch_follows_it_until_it_settles(zeroserve, zeroserve_cli, zs):
    artifact = await zs.create_artifact("gone", model_url(zeroserve, "gone"))
    configuration = await zs.create_configuration("gone", executable_id="sklearn", artifacts={"model": artifact.id})
    created = await zs.create_deployment(configuration.id)
    watched = await zeroserve_cli("status", created.id, "--watch", "--timeout", "60")
    assert watched.exit_code == 1 and "is DEAD" in watched.stderr, watched.output
    shown = await zeroserve_cli("status", created.id)
    assert f"deployment {created.id}" in shown.output and "DEAD" in shown.output
    assert "configuration" in shown.output and configuration.id in shown.output
    logs = await zeroserve_cli("logs", created.id)
    assert logs.exit_code == 0, logs.output


async def test_unknown_ids_are_one_line_errors_with_exit_1(zeroserve_cli):
    for command in (["status", "no-such-one"], ["stop", "no-such-one"], ["delete", "no-such-one"],
                    ["logs", "no-such-one"]):
        result = await zeroserve_cli(*command)
        assert result.exit_code == 1, (command, result.output)
        assert result.stderr.startswith("NotFound: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
        no_traceback(result)


async def test_bad_input_is_refused_with_exit_2_before_anything_is_called(zeroserve_cli, tmp_path):
    not_json = await zeroserve_cli("predict", "some-id", "--data", "{oops")
    assert not_json.exit_code == 2 and "--data is not JSON" in not_json.stderr
    no_file = await zeroserve_cli("predict", "some-id", "--data", f"@{tmp_path}/missing.json")
    assert no_file.exit_code == 2 and "cannot read" in no_file.stderr
    both = await zeroserve_cli("deploy", "file:///m", "--configuration", "c-1")
    assert both.exit_code == 2 and "not both" in both.stderr
    bad_param = await zeroserve_cli("deploy", "file:///m", "--param", "maxReplicas")
    assert bad_param.exit_code == 2 and "not key=value" in bad_param.stderr
    no_path = await zeroserve_cli("deploy", str(tmp_path / "nothing-here"))
    assert no_path.exit_code == 2 and "no such file or directory" in no_path.stderr
    unknown_executable = await zeroserve_cli("deploy", "file:///m", "--executable", "tensorflow-9")
    assert unknown_executable.exit_code == 2 and "no executable 'tensorflow-9'" in unknown_executable.stderr
    assert "sklearn" in unknown_executable.stderr
    for result in (not_json, no_file, both, bad_param, no_path, unknown_executable):
        no_traceback(result)


def test_without_a_running_zeroserve_the_commands_say_how_to_start_it(tmp_path):
    result = run_cli(tmp_path / "empty", "deployments")
    assert result.exit_code == 1 and "zeroserve up" in result.stderr
    no_traceback(result)


async def test_clients_create_prints_an_id_and_secret_that_get_a_token_for_that_group(zeroserve, zeroserve_cli):
    result = await zeroserve_cli("clients", "create", "--group", "team-a", "--group", "team-b", "--name", "ci")
    assert result.exit_code == 0, result.output
    client_id = re.search(r"client id:\s+(\S+)", result.output)
    secret = re.search(r"client secret:\s+(\S+)", result.output)
    assert client_id and secret
    as_team = await zeroserve_cli("token", ZEROSERVE_API_URL=zeroserve.url, ZEROSERVE_CLIENT_ID=client_id.group(1),
                                  ZEROSERVE_CLIENT_SECRET=secret.group(1))
    assert as_team.exit_code == 0, as_team.output
    async with httpx.AsyncClient(base_url=zeroserve.url,
                                 headers={"Authorization": f"Bearer {as_team.output.strip()}"}) as http:
        assert (await http.get("/v2/lm/deployments", headers={"AI-Resource-Group": "team-b"})).status_code == 200
        assert (await http.get("/v2/lm/deployments", headers={"AI-Resource-Group": "default"})).status_code == 404
    listed = await zeroserve_cli("clients", "list")
    assert client_id.group(1) in listed.output and "team-a, team-b" in listed.output


async def test_token_prints_a_bearer_token_the_api_accepts(zeroserve, zeroserve_cli):
    result = await zeroserve_cli("token")
    assert result.exit_code == 0, result.output
    async with httpx.AsyncClient(base_url=zeroserve.url) as http:
        response = await http.get("/v2/lm/deployments", headers={"Authorization": f"Bearer {result.output.strip()}"})
    assert response.status_code == 200, response.text


async def test_models_compare_puts_two_models_metrics_side_by_side(zeroserve, zeroserve_cli, zs):
    await zs.publish(
        ArtifactCreated(id="iris-v1", name="iris v1", url=model_url(zeroserve, "v1"),
                        metrics=[Metric(name="accuracy", value=0.91), Metric(name="f1", value=0.9)]),
        ArtifactCreated(id="iris-v2", name="iris v2", url=model_url(zeroserve, "v2"),
                        metrics=[Metric(name="accuracy", value=0.95)]),
    )
    for artifact_id in ("iris-v1", "iris-v2"):  # registered by a function, a moment after the publish
        for _ in range(100):
            if artifact_id in [a.id for a in await zs.artifacts()]:
                break
            await asyncio.sleep(0.1)
    result = await zeroserve_cli("models", "compare", "iris-v1", "iris-v2")
    assert result.exit_code == 0, result.output
    accuracy = next(line for line in result.output.splitlines() if line.startswith("accuracy"))
    assert accuracy.split() == ["accuracy", "0.91", "0.95", "+0.04"]
    f1 = next(line for line in result.output.splitlines() if line.startswith("f1"))
    assert f1.split() == ["f1", "0.9"]


@pytest.mark.slow
async def test_deploy_a_model_ends_running_with_its_url_and_predict_stop_delete_work(zeroserve, zeroserve_cli):
    model_dir = train_iris(zeroserve.settings.data_dir / "models-src" / "iris")
    result = await zeroserve_cli("deploy", str(model_dir), "--plan", "starter", "-p", "maxReplicas=1")
    assert result.exit_code == 0, result.output
    running = re.search(r"Deployment (\S+) is RUNNING", result.output)
    assert running, result.output
    deployment_id = running.group(1)
    url = re.search(r"URL: (\S+)", result.output)
    assert url and url.group(1).endswith(f"/v2/inference/deployments/{deployment_id}")
    assert f"predict {deployment_id} --data" in result.output

    answer = await zeroserve_cli("predict", deployment_id, "--data", json.dumps(SAMPLE))
    assert answer.exit_code == 0, answer.output
    assert len(json.loads(answer.output)["predictions"]) == 2

    logs = await zeroserve_cli("logs", deployment_id)
    assert logs.exit_code == 0 and " control-plane replica-1 ready" in logs.output, logs.output
    listed = await zeroserve_cli("deployments", "--status", "running")
    assert deployment_id in listed.output
    still_running = await zeroserve_cli("delete", deployment_id)
    assert still_running.exit_code == 1 and "stop it first" in still_running.stderr
    stopped = await zeroserve_cli("stop", deployment_id)
    assert stopped.exit_code == 0, stopped.output
    settled = await zeroserve_cli("status", deployment_id, "--watch", "--timeout", "60")
    assert settled.exit_code == 0 and "STOPPED" in settled.output, settled.output
    deleted = await zeroserve_cli("delete", deployment_id)
    assert deleted.exit_code == 0, deleted.output


def test_the_installed_command_runs_the_client_commands_as_a_process(tmp_path):
    result = subprocess.run([sys.executable, "-m", "zeroserve.cli", "artifacts"], capture_output=True, text=True,
                            env={**os.environ, "ZEROSERVE_API_URL": "http://127.0.0.1:9", "ZEROSERVE_TOKEN": "t"})
    assert result.returncode == 1 and result.stderr.startswith("Unreachable: cannot reach http://127.0.0.1:9")
    assert "Traceback" not in result.stderr


def test_deploy_shows_the_openai_call_for_an_llm_and_the_predict_call_otherwise():
    from zeroserve.cli.deploy import _predict_example
    from zeroserve.cli.output import console

    url = "http://127.0.0.1:8700/v2/inference/deployments/chat-bot"
    with console.capture() as llm:
        _predict_example("chat-bot", url, "huggingface")
    with console.capture() as tabular:
        _predict_example("iris", url, "sklearn")
    assert f"{url}/openai/v1/chat/completions" in llm.get() and '"model": "chat-bot"' in llm.get()
    assert "openai" not in tabular.get() and f"{url}/v1/models/iris:predict" in tabular.get()


def every_executable(sources: Path) -> dict[str, tuple[Path, list[str], str, dict]]:
    """For each shipped executable: a model made here, the extra deploy flags, and a call (path under
    the deployment's URL, JSON body) that its protocol answers."""
    import shutil

    from language_models import make_tiny_causal_lm, make_tiny_encoder
    from models import IRIS_ROWS, train_iris_lightgbm, train_iris_onnx, train_iris_torchscript, train_iris_xgboost

    rows = {"instances": IRIS_ROWS}
    probe = shutil.copytree(Path(__file__).parent / "data" / "predictors" / "probe", sources / "probe")
    return {
        "sklearn": (train_iris(sources / "sklearn"), [], "/v1/models/{id}:predict", rows),
        "onnx": (train_iris_onnx(sources / "onnx"), [], "/v1/models/{id}:predict", rows),
        "xgboost": (train_iris_xgboost(sources / "xgboost"), [], "/v1/models/{id}:predict", rows),
        "lightgbm": (train_iris_lightgbm(sources / "lightgbm"), [], "/v1/models/{id}:predict", rows),
        "pytorch": (train_iris_torchscript(sources / "pytorch"), [], "/v1/models/{id}:predict", rows),
        "huggingface": (make_tiny_causal_lm(sources / "llm"), [], "/openai/v1/chat/completions",
                        {"model": "{id}", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}),
        "huggingface-embeddings": (make_tiny_encoder(sources / "encoder"), [], "/openai/v1/embeddings",
                                   {"model": "{id}", "input": "Hi"}),
        "custom": (probe, ["-p", "image=example.com/probe:1"], "/v1/models/{id}:predict", {"echo": True}),
    }


@pytest.mark.slow
async def test_zeroserve_deploy_serves_every_executable_and_each_answers_its_protocol_from_zero(
        zeroserve, zeroserve_cli, zs):
    executables = every_executable(zeroserve.settings.data_dir / "models-src")
    assert set(executables) == {executable.id for executable in await zs.executables()}  # none left out
    token = (await zeroserve_cli("token")).output.strip()
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=120) as http:
        for executable, (model_dir, flags, path, body) in executables.items():
            deployed = await zeroserve_cli("deploy", str(model_dir), "-e", executable, *flags)
            assert deployed.exit_code == 0, f"{executable}: {deployed.output}"
            deployment_id = re.search(r"Deployment (\S+) is RUNNING", deployed.output).group(1)  # type: ignore[union-attr]
            url = re.search(r"URL: (\S+)", deployed.output).group(1)  # type: ignore[union-attr]
            answer = await http.post(url + path.format(id=deployment_id),
                                     content=json.dumps(body).replace("{id}", deployment_id),
                                     headers={"Content-Type": "application/json"})
            assert answer.status_code == 200, f"{executable}: {answer.text}"
            assert answer.headers["X-Cold-Start"] == "true", executable
            assert answer.json(), executable
