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
import kserve
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest, InferResponse
from kserve.utils.utils import get_predict_input, get_predict_response

from zeroserve.errors import ModelLoadFailed
from zeroserve.serving.runtimes import find_model_file

MODEL_FILE = "model.joblib"
MODEL_SUFFIXES = (".joblib", ".pkl", ".pickle")


def model_file(model_dir: Path) -> Path:
    """The one model file of ``model_dir`` (``model_dir`` itself if it is a file)."""
    return find_model_file(model_dir, MODEL_FILE, MODEL_SUFFIXES)


class SKLearnModel(kserve.Model):
    estimator: Any  # set by load(): whatever was pickled, as long as it has predict()

    def __init__(self, name: str, model_dir: str | Path) -> None:
        super().__init__(name)
        self.model_dir = Path(model_dir)

    def load(self) -> bool:
        path = model_file(self.model_dir)
        try:
            self.estimator = joblib.load(path)
        except Exception as exc:  # unpickling fails in many ways, each one means "not a model"
            raise ModelLoadFailed(f"cannot unpickle {path}: {type(exc).__name__}: {exc}") from exc
        if not callable(getattr(self.estimator, "predict", None)):
            raise ModelLoadFailed(f"{path} holds a {type(self.estimator).__name__}, which has no predict()")
        self.ready = True
        return self.ready

    def predict(
        self, payload: dict | InferRequest, headers: dict[str, str] | None = None
    ) -> dict | InferResponse:
        instances = get_predict_input(payload)
        try:
            result = self.estimator.predict(instances)
        except (ValueError, TypeError) as exc:  # wrong shape or type of the input: the caller's to fix
            raise InvalidInput(str(exc)) from exc
        return get_predict_response(payload, result, self.name)
