"""What the runtimes of models that predict on rows of numbers share (scikit-learn, XGBoost,
LightGBM): one model file found in the model directory, as KServe's own servers look for it, and
V1 ``{"instances": [...]}`` or a V2 ``InferRequest`` answered with the model's predictions, the
shape KServe's sklearnserver, xgbserver and lgbserver give. A runtime says which file it reads and
how (``read``) and how it predicts (``infer``); input of the wrong shape or type is the caller's to
fix (400), a file that does not load leaves the deployment DEAD with the library's own message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import kserve
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest, InferResponse
from kserve.utils.utils import get_predict_input, get_predict_response

from zeroserve.errors import ModelLoadFailed, ZeroserveError
from zeroserve.serving.runtimes import find_model_file


class TabularModel(kserve.Model):
    """A model file that predicts on a 2-D array of numbers."""

    model_file: ClassVar[str]  # the name KServe's own server loads, e.g. model.bst
    model_suffixes: ClassVar[tuple[str, ...]]  # else the one file with one of these
    # The library's errors that mean "this input does not fit the model", besides ValueError and TypeError.
    input_errors: ClassVar[tuple[type[Exception], ...]] = ()

    def __init__(self, name: str, model_dir: str | Path) -> None:
        super().__init__(name)
        self.model_dir = Path(model_dir)

    def read(self, path: Path) -> None:
        raise NotImplementedError

    def infer(self, instances: Any) -> Any:
        raise NotImplementedError

    def load(self) -> bool:
        path = find_model_file(self.model_dir, self.model_file, self.model_suffixes)
        try:
            self.read(path)
        except ZeroserveError:
            raise
        except Exception as exc:  # each library fails in its own ways; each means "not a model of this kind"
            raise ModelLoadFailed(f"cannot load {path}: {type(exc).__name__}: {exc}") from exc
        self.ready = True
        return self.ready

    def predict(
        self, payload: dict | InferRequest, headers: dict[str, str] | None = None
    ) -> dict | InferResponse:
        instances = get_predict_input(payload)
        refused: tuple[type[Exception], ...] = (ValueError, TypeError, *self.input_errors)  # the caller's to fix
        try:
            result = self.infer(instances)
        except refused as exc:
            raise InvalidInput(str(exc)) from exc
        return get_predict_response(payload, result, self.name)
