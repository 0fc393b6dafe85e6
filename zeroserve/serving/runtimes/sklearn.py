"""The scikit-learn runtime: a joblib-pickled estimator served with KServe. Like KServe's own
``sklearnserver``, it loads ``model.joblib`` (or the only ``*.joblib``, ``*.pkl`` or ``*.pickle``
file) from the model directory and answers V1 ``{"instances": [...]}`` and V2 ``InferRequest`` with
the estimator's ``predict``. Unpickling runs code from the file: the artifact must come from a
source the deployment's owner trusts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib

from zeroserve.errors import ModelLoadFailed
from zeroserve.serving.runtimes import find_model_file
from zeroserve.serving.runtimes.tabular import TabularModel

MODEL_FILE = "model.joblib"
MODEL_SUFFIXES = (".joblib", ".pkl", ".pickle")


def model_file(model_dir: Path) -> Path:
    """The one model file of ``model_dir`` (``model_dir`` itself if it is a file)."""
    return find_model_file(model_dir, MODEL_FILE, MODEL_SUFFIXES)


class SKLearnModel(TabularModel):
    model_file = MODEL_FILE
    model_suffixes = MODEL_SUFFIXES
    estimator: Any  # set by load(): whatever was pickled, as long as it has predict()

    def read(self, path: Path) -> None:
        try:
            self.estimator = joblib.load(path)
        except Exception as exc:  # unpickling fails in many ways, each one means "not a model"
            raise ModelLoadFailed(f"cannot unpickle {path}: {type(exc).__name__}: {exc}") from exc
        if not callable(getattr(self.estimator, "predict", None)):
            raise ModelLoadFailed(f"{path} holds a {type(self.estimator).__name__}, which has no predict()")

    def infer(self, instances: Any) -> Any:
        return self.estimator.predict(instances)
