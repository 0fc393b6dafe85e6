"""The LightGBM runtime: a saved ``Booster`` served with KServe. Like KServe's own ``lgbserver``, it
loads ``model.bst`` (or the only ``*.bst`` or ``*.txt`` file) from the model directory, and answers
with ``Booster.predict``: classes' probabilities for a multiclass model, values for a regressor.
Save a model with ``booster.save_model("model.bst")``
(``LGBMClassifier().fit(...).booster_.save_model(...)``), not with pickle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm
import numpy as np

from zeroserve.serving.runtimes.tabular import TabularModel


class LightGBMModel(TabularModel):
    model_file = "model.bst"
    model_suffixes = (".bst", ".txt")
    input_errors = (lightgbm.basic.LightGBMError,)
    booster: lightgbm.Booster

    def read(self, path: Path) -> None:
        self.booster = lightgbm.Booster(model_file=str(path), params={"num_threads": 1})

    def infer(self, instances: Any) -> Any:
        return self.booster.predict(np.asarray(instances, dtype=np.float64))
