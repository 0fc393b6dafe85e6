"""The model servers the local backend starts, one per model format. Each runtime is a
``kserve.Model`` subclass with ``load()`` and ``predict()``; KServe's own ``ModelServer`` does the
rest (HTTP, the V1 and V2 protocols, health). ``RUNTIMES`` names them as ``"module:Class"`` strings
so that the control plane can check a format without importing kserve (1.2 s and 200 MB); only the
replica process, which serves the model, imports its runtime. Runtimes know nothing of the control
plane: they import only ``zeroserve.errors``, ``zeroserve.children`` and each other.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from zeroserve.errors import ModelLoadFailed

# Model-format name (KServe's ``modelFormat.name``) -> the kserve.Model subclass that serves it (or
# what makes one: custom's comes from the artifact).
RUNTIMES: dict[str, str] = {
    "sklearn": "zeroserve.serving.runtimes.sklearn:SKLearnModel",
    "onnx": "zeroserve.serving.runtimes.onnx:ONNXModel",
    "xgboost": "zeroserve.serving.runtimes.xgboost:XGBoostModel",
    "lightgbm": "zeroserve.serving.runtimes.lightgbm:LightGBMModel",
    "huggingface": "zeroserve.serving.runtimes.huggingface:load_huggingface",
    "pytorch": "zeroserve.serving.runtimes.pytorch:PyTorchModel",
    "custom": "zeroserve.serving.runtimes.custom:load_predictor",
}

# The formats whose runtimes import torch (seconds of imports and warm-up; 537 MB in a fork server that holds them):
# the CPU fork server leaves them out, their replicas fork from a fork server of their own.
TORCH_FORMATS: frozenset[str] = frozenset({"pytorch", "huggingface"})

# The frameworks a runtime imports beyond kserve, and the extra of zeroserve that installs them: the
# local backend refuses a deployment whose framework is missing, naming the extra (RuntimeNotInstalled).
FRAMEWORKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sklearn": ("server", ("sklearn", "joblib")),
    "onnx": ("server", ("onnxruntime",)),
    "xgboost": ("server", ("xgboost",)),
    "lightgbm": ("server", ("lightgbm",)),
    "pytorch": ("torch", ("torch",)),
    "huggingface": ("torch", ("torch", "transformers", "safetensors", "accelerate", "openai")),
}


def load_runtime(model_format: str) -> type:
    """The kserve.Model subclass that serves ``model_format``; imports it (and kserve) now."""
    target = RUNTIMES.get(model_format.lower())
    if target is None:
        known = ", ".join(sorted(RUNTIMES))
        raise ModelLoadFailed(f"unknown model format {model_format!r} (known formats: {known})")
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def find_model_file(model_dir: Path, preferred: str, suffixes: tuple[str, ...]) -> Path:
    """``model_dir/preferred``, else the one file with one of ``suffixes`` (``model_dir`` if it is a file)."""
    if model_dir.is_file():
        return model_dir
    if not model_dir.is_dir():
        raise ModelLoadFailed(f"model directory {model_dir} does not exist")
    if (model_dir / preferred).is_file():
        return model_dir / preferred
    candidates = sorted(p for p in model_dir.iterdir() if p.is_file() and p.suffix in suffixes)
    if len(candidates) == 1:
        return candidates[0]
    kinds = " / ".join(f"*{suffix}" for suffix in suffixes)
    if not candidates:
        raise ModelLoadFailed(f"no {preferred} (or other {kinds} file) in {model_dir}")
    names = ", ".join(p.name for p in candidates)
    raise ModelLoadFailed(f"more than one {kinds} file in {model_dir} ({names}) and no {preferred}")
