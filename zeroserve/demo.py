"""The demo `zeroserve up --demo` brings up: a scikit-learn iris classifier, served from zero."""

from __future__ import annotations

from pathlib import Path

from zeroserve.events import ArtifactCreated, DeploymentRequested

DEPLOYMENT_ID = "iris"
ARTIFACT_ID = "iris-model"
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
    )
    return artifact, deployment
