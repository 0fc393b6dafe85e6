"""The model servers the local backend starts, one per model format.

Each runtime is a ``kserve.Model`` subclass with ``load()`` and ``predict()``; KServe's own
``ModelServer`` does the rest (HTTP, the V1 and V2 protocols, health). ``RUNTIMES`` names them as
``"module:Class"`` strings so that the control plane can check a format without importing kserve
(1.2 s and 200 MB); only the replica process, which serves the model, imports its runtime.
"""

from __future__ import annotations

import importlib

from zeroserve.errors import ModelLoadFailed

# Model-format name (KServe's ``modelFormat.name``) -> the kserve.Model subclass that serves it.
RUNTIMES: dict[str, str] = {
    "sklearn": "zeroserve.runtimes.sklearn:SKLearnModel",
    "onnx": "zeroserve.runtimes.onnx:ONNXModel",
}


def load_runtime(model_format: str) -> type:
    """The kserve.Model subclass that serves ``model_format``; imports it (and kserve) now."""
    target = RUNTIMES.get(model_format.lower())
    if target is None:
        known = ", ".join(sorted(RUNTIMES))
        raise ModelLoadFailed(f"unknown model format {model_format!r} (known formats: {known})")
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)
