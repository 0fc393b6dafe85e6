"""The XGBoost runtime: a saved ``Booster`` served with KServe. Like KServe's own ``xgbserver``, it
loads ``model.bst`` (or the only ``*.bst``, ``*.json`` or ``*.ubj`` file) from the model directory,
and answers with ``Booster.predict``: classes' probabilities for a ``multi:softprob`` model, the
class for ``multi:softmax``, values for a regressor. Save a model with ``booster.save_model``
(``XGBClassifier().fit(...).get_booster().save_model("model.json")``), not with pickle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xgboost

from zeroserve.serving.runtimes.tabular import TabularModel


class XGBoostModel(TabularModel):
    model_file = "model.bst"
    model_suffixes = (".bst", ".json", ".ubj")
    input_errors = (xgboost.core.XGBoostError,)
    booster: xgboost.Booster

    def read(self, path: Path) -> None:
        self.booster = xgboost.Booster(params={"nthread": 1}, model_file=str(path))

    def infer(self, instances: Any) -> Any:
        rows = np.asarray(instances, dtype=np.float32)
        # XGBoost would take rows of any width, the missing columns as missing values: refused here.
        expected = self.booster.num_features()
        if rows.ndim != 2 or rows.shape[1] != expected:
            raise ValueError(f"each instance must have {expected} features, not {rows.shape[1:] or 'a scalar'}")
        return self.booster.predict(xgboost.DMatrix(rows))
