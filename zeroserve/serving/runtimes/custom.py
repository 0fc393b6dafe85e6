"""The custom runtime: a model directory that holds ``predictor.py``, a module with one
``kserve.Model`` subclass, KServe's custom-predictor convention. The replica imports the module and
serves an instance of that class, made as KServe's examples make theirs (``Predictor(name)``),
with KServe's own model server: V1 and V2 protocols, and an answer streamed as it is written when
``predict`` returns an async iterator (an event stream, tokens of a generation). Its files are
beside it (``Path(__file__).parent``).

A custom predictor is the artifact's own code, run in the replica's process with the rights of the
user zeroserve runs as: it can read and write what that user can and open any connection. Only
templates whose model format is ``custom`` deploy one, and zeroserve ships none: an operator who
adds one trusts every client that may deploy with it. The artifact must come from a source the
deployment's owner trusts, as for a pickled scikit-learn model.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

import kserve

from zeroserve.errors import ModelLoadFailed

PREDICTOR_FILE = "predictor.py"


def load_predictor(name: str, model_dir: str | Path) -> kserve.Model:
    """The ``kserve.Model`` of ``model_dir/predictor.py``, made with ``name`` (the replica loads it next)."""
    path = Path(model_dir) / PREDICTOR_FILE if Path(model_dir).is_dir() else Path(model_dir)
    if not path.is_file():
        raise ModelLoadFailed(f"no {PREDICTOR_FILE} in {model_dir}")
    spec = importlib.util.spec_from_file_location("predictor", path)
    assert spec is not None and spec.loader is not None  # a .py file always has both
    module = importlib.util.module_from_spec(spec)
    sys.modules["predictor"] = module  # as `python predictor.py` would have it: pickles and dataclasses need it
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ModelLoadFailed(f"{path} cannot be imported: {type(exc).__name__}: {exc}") from exc
    found: list[type[kserve.Model]] = [
        value for value in vars(module).values()
        if inspect.isclass(value) and issubclass(value, kserve.Model) and value.__module__ == module.__name__]
    if len(found) != 1:
        named = ", ".join(cls.__name__ for cls in found) or "none"
        raise ModelLoadFailed(f"{path} must define exactly one kserve.Model subclass (found {named})")
    return found[0](name)
