"""Each model format zeroserve serves, deployed by events and called from zero through the gateway,
answering as its own library would: XGBoost and LightGBM boosters (scikit-learn and ONNX are in
test_end_to_end.py and test_api_lifecycle.py)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import operator
from models import IRIS_ROWS, train_iris_lightgbm, train_iris_xgboost
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
