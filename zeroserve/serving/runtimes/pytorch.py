"""The PyTorch runtime: a TorchScript program (``torch.jit.save``) served with KServe. It loads
``model.pt`` (or the only ``*.pt`` file) from the model directory, or the newest version of a
Triton model repository (``<name>/<version>/model.pt``), the layout KServe's Triton runtime serves
the same file from on a cluster; no Python source of the model is needed. The program runs on the
GPU when the replica was given one (``CUDA_VISIBLE_DEVICES``) and CUDA is there, else on the CPU,
with as many threads as the replica may use, under ``torch.inference_mode``. V1
``{"instances": [...]}`` is one tensor (JSON floats as float32, the weights' type; integers as
int64, as token ids are); V2 inputs keep their datatype and go to ``forward`` in order, or by name
when they are named as its parameters. The answer is the program's output: V1 the first tensor,
V2 every tensor. An input that does not fit the program (shape, type) is a 400 with torch's own
message. Importing this module imports torch (about a second): the CPU fork server never does,
the torch fork server does (``TORCH_FORMATS``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import kserve
import numpy as np
import torch
from kserve.errors import InferenceError, InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.utils.numpy_codec import from_np_dtype
from kserve.utils.utils import generate_uuid

from zeroserve.errors import ModelLoadFailed
from zeroserve.serving.runtimes import find_model_file
from zeroserve.serving.runtimes.torch_placement import replica_device, use_replica_threads

MODEL_FILE = "model.pt"


def model_file(model_dir: Path) -> Path:
    """``model.pt`` (or the only ``*.pt``), else the newest ``<name>/<version>/model.pt`` of a Triton repository."""
    if model_dir.is_dir() and not (model_dir / MODEL_FILE).is_file():
        versions = [p for p in model_dir.glob(f"*/*/{MODEL_FILE}") if p.parent.name.isdigit()]
        if len({p.parent.parent for p in versions}) == 1:
            return max(versions, key=lambda p: int(p.parent.name))
    return find_model_file(model_dir, MODEL_FILE, (".pt",))


class PyTorchModel(kserve.Model):
    program: torch.jit.ScriptModule  # set by load()
    device: torch.device
    parameters: list[str]  # forward's parameter names, for V2 inputs given by name

    def __init__(self, name: str, model_dir: str | Path) -> None:
        super().__init__(name)
        self.model_dir = Path(model_dir)

    def load(self) -> bool:
        path = model_file(self.model_dir)
        use_replica_threads()
        self.device = replica_device()
        try:
            self.program = torch.jit.load(str(path), map_location=self.device)
        except Exception as exc:  # torch says "PytorchStreamReader failed ..." for a file of another kind
            raise ModelLoadFailed(
                f"cannot load {path} as a TorchScript program (torch.jit.save; a torch.save'd module or "
                f"state_dict is not one): {type(exc).__name__}: {_last_line(exc)}") from exc
        self.program.eval()
        schema = self.program.forward.schema  # type: ignore[attr-defined]  # a ScriptMethod's, untyped
        self.parameters = [argument.name for argument in schema.arguments[1:]]
        self.ready = True
        return self.ready

    def predict(
        self, payload: dict | InferRequest, headers: dict[str, str] | None = None
    ) -> dict | InferResponse:
        try:
            args, kwargs = self._arguments(payload)
            with torch.inference_mode():
                result = self.program(*args, **kwargs)
        except torch.OutOfMemoryError:
            raise  # the replica's trouble, not the caller's
        except (RuntimeError, ValueError, TypeError) as exc:  # shape, type, rank: the caller's to fix
            raise InvalidInput(_last_line(exc)) from exc
        outputs = _tensors(result)
        if not isinstance(payload, InferRequest):
            return {"predictions": outputs[0][1].tolist()}
        return self._v2_response(payload, outputs)

    def _arguments(self, payload: dict | InferRequest) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        if not isinstance(payload, InferRequest):
            if not isinstance(payload, dict) or "instances" not in payload:
                raise ValueError('a V1 request is {"instances": [...]}')
            array = np.asarray(payload["instances"])
            if array.dtype == np.float64:
                array = array.astype(np.float32)
            return [self._tensor(array)], {}
        tensors = {i.name: self._tensor(i.as_numpy()) for i in payload.inputs}
        if len(tensors) > 1 and set(tensors) <= set(self.parameters):
            return [], tensors
        return list(tensors.values()), {}

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        if array.dtype == np.object_:
            raise ValueError("the input must be numbers (a tensor), not strings or rows of different lengths")
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def _v2_response(self, request: InferRequest, outputs: list[tuple[str, torch.Tensor]]) -> InferResponse:
        infer_outputs = []
        for name, tensor in outputs:
            array = tensor.numpy()
            output = InferOutput(name=name, shape=list(array.shape), datatype=from_np_dtype(array.dtype))
            output.set_data_from_numpy(array, binary_data=request.use_binary_outputs)
            infer_outputs.append(output)
        return InferResponse(response_id=request.id or generate_uuid(), model_name=self.name,
                             infer_outputs=infer_outputs, use_binary_outputs=request.use_binary_outputs)


def _tensors(result: Any) -> list[tuple[str, torch.Tensor]]:
    """The program's output as named CPU tensors: a tensor, a tuple or list of them, or a dict of them."""
    if isinstance(result, torch.Tensor):
        named: Sequence[tuple[str, Any]] = [("output-0", result)]
    elif isinstance(result, dict):
        named = [(str(key), value) for key, value in result.items()]
    elif isinstance(result, (tuple, list)):
        named = [(f"output-{number}", value) for number, value in enumerate(result)]
    else:
        named = []
    if not named or not all(isinstance(value, torch.Tensor) for _, value in named):
        # The program's own doing, not the caller's: a 500 that says what came back.
        raise InferenceError(f"the program answered with a {type(result).__name__}, not tensors")
    # numpy has no bfloat16: such outputs are answered as float32.
    return [(name, (value.float() if value.dtype == torch.bfloat16 else value).cpu()) for name, value in named]


def _last_line(exc: BaseException) -> str:
    """torch's own message: for an error inside a TorchScript program, its last line (the op's
    error), not the interpreter's traceback of the program above it."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
