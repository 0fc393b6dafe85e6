"""Each model format zeroserve serves, deployed by events and called from zero through the gateway,
answering as its own library would: XGBoost and LightGBM boosters, a TorchScript program
(scikit-learn and ONNX are in test_end_to_end.py and test_api_lifecycle.py); and a custom predictor
that cannot be imported, whose traceback is the deployment's to show."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import operator, until
from models import IRIS_ROWS, train_iris_lightgbm, train_iris_torchscript, train_iris_xgboost
from test_end_to_end import publish

from zeroserve.events import ArtifactCreated, DeploymentRequested
from zeroserve.node import Node

pytestmark = pytest.mark.slow


async def test_xgboost_and_lightgbm_boosters_serve_from_zero_through_the_gateway(zeroserve: Node, listen):
    import lightgbm
    import xgboost

    sources = zeroserve.settings.data_dir / "sources"
    models = {"xgboost": train_iris_xgboost(sources / "xgboost"), "lightgbm": train_iris_lightgbm(sources / "lightgbm")}
    expected = {
        "xgboost": xgboost.Booster(model_file=str(models["xgboost"] / "model.json")).predict(
            xgboost.DMatrix(np.array(IRIS_ROWS, dtype=np.float32))),
        "lightgbm": lightgbm.Booster(model_file=str(models["lightgbm"] / "model.bst")).predict(np.array(IRIS_ROWS)),
    }
    artifacts = await listen(zeroserve, "zeroserve.default.artifact.status")
    statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
    for name, model_dir in models.items():
        await publish(zeroserve, ArtifactCreated(id=f"{name}-iris", name=name, url=model_dir.as_uri()))
        await artifacts.wait_for(lambda e, name=name: e["id"] == f"{name}-iris" and e["status"] == "staged")
        await publish(zeroserve, DeploymentRequested(id=f"{name}-iris", executable_id=name,
                                                     input_artifacts={"model": f"{name}-iris"}))
    async with operator(zeroserve) as client:
        for name in models:
            running = await statuses.wait_for(
                lambda e, name=name: e["id"] == f"{name}-iris" and e["status"] == "RUNNING")
            answer = await client.post(f"{running['deploymentUrl']}/v1/models/{name}-iris:predict",
                                       json={"instances": IRIS_ROWS})
            assert answer.status_code == 200, answer.text
            assert answer.headers["X-Cold-Start"] == "true"
            assert np.allclose(answer.json()["predictions"], expected[name], atol=1e-6)
            assert [row.index(max(row)) for row in answer.json()["predictions"]] == [1, 1]


async def deploy_artifact(zeroserve: Node, listen, name: str, executable: str, model_dir, **parameters: str) -> dict:
    """``model_dir`` registered and deployed with ``executable``: its RUNNING status (at zero replicas)."""
    artifacts = await listen(zeroserve, "zeroserve.default.artifact.status")
    statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
    await publish(zeroserve, ArtifactCreated(id=name, name=name, url=model_dir.as_uri()))
    await artifacts.wait_for(lambda e: e["id"] == name and e["status"] == "staged")
    await publish(zeroserve, DeploymentRequested(id=name, executable_id=executable, input_artifacts={"model": name},
                                                 parameters=parameters))
    return await statuses.wait_for(lambda e: e["id"] == name and e["status"] == "RUNNING")


async def test_a_torchscript_program_serves_v1_and_v2_from_zero_through_the_gateway(zeroserve: Node, listen):
    import torch

    model_dir = train_iris_torchscript(zeroserve.settings.data_dir / "sources" / "torch")
    expected = torch.jit.load(str(model_dir / "model.pt"))(torch.tensor(IRIS_ROWS)).detach().numpy()
    running = await deploy_artifact(zeroserve, listen, "iris-torch", "pytorch", model_dir)
    async with operator(zeroserve) as client:
        v1 = await client.post(f"{running['deploymentUrl']}/v1/models/iris-torch:predict",
                               json={"instances": IRIS_ROWS})
        assert v1.status_code == 200, v1.text
        assert v1.headers["X-Cold-Start"] == "true"
        assert np.allclose(v1.json()["predictions"], expected, atol=1e-6)
        v2 = await client.post(f"{running['deploymentUrl']}/v2/models/iris-torch/infer", json={"inputs": [
            {"name": "x", "shape": [2, 4], "datatype": "FP32", "data": sum(IRIS_ROWS, [])}]})
        assert v2.status_code == 200, v2.text
        assert v2.json()["outputs"][0]["shape"] == [2, 3]
        assert np.allclose(v2.json()["outputs"][0]["data"], expected.ravel(), atol=1e-6)


async def test_a_predictor_that_raises_at_import_is_dead_with_its_traceback_in_the_deployment_log(
        zeroserve: Node, listen, caplog):
    caplog.set_level(logging.DEBUG)
    source = zeroserve.settings.data_dir / "sources" / "broken-predictor"
    source.mkdir(parents=True)
    (source / "predictor.py").write_text(
        "import kserve\n\n\ndef weights():\n    raise OSError('weights.bin is missing')\n\n\nWEIGHTS = weights()\n")
    statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
    running = await deploy_artifact(zeroserve, listen, "broken", "custom", source, image="example/predictor:1")
    async with operator(zeroserve) as client:
        answer = await client.post(f"{running['deploymentUrl']}/v1/models/broken:predict", json={"instances": [[1]]})
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "ModelLoadFailed"
        dead = await statuses.wait_for(lambda e: e["id"] == "broken" and e["status"] == "DEAD")
        assert dead["reason"] == "ModelLoadFailed"
        assert "cannot be imported: OSError: weights.bin is missing" in dead["message"]

        async def logged() -> list[str] | None:
            response = await client.get(f"{zeroserve.url}/v2/lm/deployments/broken/logs",
                                        headers={"AI-Resource-Group": "default"})
            lines = [line["msg"] for line in response.json()["data"]["result"]]
            return lines if any("Traceback" in line for line in lines) else None

        logs = "\n".join(await until(logged, what="the traceback in the deployment's log"))
    assert 'predictor.py", line 8, in <module>' in logs and 'line 5, in weights' in logs
    assert "importlib" not in logs  # from the predictor's own frames on
    assert "Traceback" not in caplog.text and "in weights" not in caplog.text  # the deployment's, not the gateway's
