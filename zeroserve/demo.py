"""The demo `zeroserve up --demo` brings up: a scikit-learn iris classifier, served from zero."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from zeroserve.core.store import Configuration
from zeroserve.events import ArtifactBinding, ArtifactCreated, DeploymentRequested, ParameterBinding, new_event

if TYPE_CHECKING:
    from zeroserve.platform import Platform

DEPLOYMENT_ID = "iris"
ARTIFACT_ID = "iris-model"
CONFIGURATION_ID = "iris-demo"
SCENARIO_ID = "model-serving"
SAMPLE = {"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}


def train_iris(directory: Path) -> Path:
    """A small iris classifier in ``directory/model.joblib``, trained once."""
    target = directory / "model.joblib"
    if not target.exists():
        import joblib
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression

        directory.mkdir(parents=True, exist_ok=True)
        features, labels = load_iris(return_X_y=True)
        joblib.dump(LogisticRegression(max_iter=500).fit(features, labels), target)
    return directory


def demo_events(model_dir: Path) -> tuple[ArtifactCreated, DeploymentRequested]:
    artifact = ArtifactCreated(
        id=ARTIFACT_ID, name="iris", kind="model", url=model_dir.resolve().as_uri(),
        description="scikit-learn logistic regression on the iris data set",
    )
    deployment = DeploymentRequested(
        id=DEPLOYMENT_ID, executable_id="sklearn", input_artifacts={"model": ARTIFACT_ID},
        parameters={"minReplicas": "0", "resourcePlan": "starter"},
        configuration_id=CONFIGURATION_ID, scenario_id=SCENARIO_ID,
    )
    return artifact, deployment


def demo_configuration(deployment: DeploymentRequested, group: str) -> Configuration:
    """The configuration the demo deployment names, as the API would have made it: SAP's clients
    (sap-ai-sdk-core) read every deployment's configurationId, configurationName and scenarioId."""
    return Configuration(
        id=CONFIGURATION_ID, group=group, name="iris", executable_id=deployment.executable_id,
        scenario_id=SCENARIO_ID,
        parameter_bindings=[ParameterBinding(key=k, value=v) for k, v in deployment.parameters.items()],
        input_artifact_bindings=[ArtifactBinding(key=k, artifact_id=v) for k, v in deployment.input_artifacts.items()],
    )


async def publish_demo(platform: Platform, model_dir: Path, source: str, group: str = "default",
                       **parameters: str) -> None:
    """The demo's two events, the deployment (with these parameters besides the demo's) once the
    artifact is registered: functions handle events side by side, and a deployment of an artifact
    not registered yet would be DEAD (ArtifactNotFound)."""
    artifact, deployment = demo_events(model_dir)
    deployment.parameters.update(parameters)
    await platform.bus.publish(new_event(artifact, source=source), group)
    async with asyncio.timeout(60):
        while await platform.store.artifacts.get(group, ARTIFACT_ID) is None:  # noqa: ASYNC110 (a KV read)
            await asyncio.sleep(0.02)
    await platform.store.configurations.put(group, CONFIGURATION_ID, demo_configuration(deployment, group))
    await platform.bus.publish(new_event(deployment, source=source), group)
