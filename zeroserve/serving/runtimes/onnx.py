"""The ONNX runtime: a ``model.onnx`` served by onnxruntime on the CPU, with KServe. V1
``{"instances": [...]}`` feeds the model's one input and answers with its first tensor output; V1
``{"inputs": {name: [...]}}`` feeds inputs by name. V2 feeds each request input to the model input
of the same name (or, with one input each, to the only one) and answers with every tensor output.
Non-tensor outputs (a ZipMap's list of dicts) have no V2 encoding and are left out: convert
classifiers with ``zipmap=False``.
"""

from __future__ import annotations

from pathlib import Path

import kserve
import numpy as np
import onnxruntime
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.utils.numpy_codec import from_np_dtype
from kserve.utils.utils import generate_uuid
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from zeroserve.errors import ModelLoadFailed
from zeroserve.serving.runtimes import find_model_file

MODEL_FILE = "model.onnx"

# onnxruntime's type names -> numpy dtypes, to cast JSON numbers to what the graph expects.
DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint64)": np.uint64,
    "tensor(uint32)": np.uint32,
    "tensor(uint16)": np.uint16,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


def model_file(model_dir: Path) -> Path:
    """``model.onnx`` of ``model_dir``, or its only ``*.onnx`` file (``model_dir`` if it is a file)."""
    return find_model_file(model_dir, MODEL_FILE, (".onnx",))


class ONNXModel(kserve.Model):
    session: onnxruntime.InferenceSession  # set by load()
    inputs: dict[str, type]  # input name -> the numpy type the graph expects
    outputs: list[str]  # the tensor outputs, in the graph's order

    def __init__(self, name: str, model_dir: str | Path) -> None:
        super().__init__(name)
        self.model_dir = Path(model_dir)

    def load(self) -> bool:
        path = model_file(self.model_dir)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: warnings about graph optimisation are noise here
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's errors have no common base but Exception
            raise ModelLoadFailed(f"cannot load {path}: {type(exc).__name__}: {exc}") from exc
        self.inputs = {i.name: DTYPES.get(i.type, np.float32) for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs() if o.type.startswith("tensor(")]
        if not self.outputs:
            raise ModelLoadFailed(f"{path} has no tensor output to answer with")
        self.ready = True
        return self.ready

    def get_input_types(self) -> list[dict]:
        return _tensor_metadata(self.session.get_inputs())

    def get_output_types(self) -> list[dict]:
        return _tensor_metadata(o for o in self.session.get_outputs() if o.name in self.outputs)

    def predict(
        self, payload: dict | InferRequest, headers: dict[str, str] | None = None
    ) -> dict | InferResponse:
        if isinstance(payload, InferRequest):
            feeds = self._v2_feeds(payload)
        else:
            feeds = self._v1_feeds(payload)
        try:
            results = self.session.run(self.outputs, feeds)
        except InvalidArgument as exc:  # wrong shape or rank for the graph: the caller's to fix
            raise InvalidInput(str(exc)) from exc
        if not isinstance(payload, InferRequest):
            return {"predictions": results[0].tolist()}
        binary = payload.use_binary_outputs
        outputs = []
        for name, result in zip(self.outputs, results, strict=True):
            output = InferOutput(name=name, shape=list(result.shape), datatype=from_np_dtype(result.dtype))
            output.set_data_from_numpy(result, binary_data=binary)
            outputs.append(output)
        return InferResponse(
            response_id=payload.id or generate_uuid(),
            model_name=self.name,
            infer_outputs=outputs,
            use_binary_outputs=binary,
        )

    def _v1_feeds(self, payload: dict) -> dict[str, np.ndarray]:
        if isinstance(payload.get("inputs"), dict):
            columns = payload["inputs"]
        elif len(self.inputs) == 1:
            columns = {next(iter(self.inputs)): payload.get("instances", payload.get("inputs"))}
        else:
            names = ", ".join(self.inputs)
            raise InvalidInput(f"the model has several inputs ({names}): send {{'inputs': {{name: [...]}}}}")
        return {name: self._tensor(name, columns.get(name)) for name in self.inputs}

    def _v2_feeds(self, request: InferRequest) -> dict[str, np.ndarray]:
        if len(self.inputs) == 1 and len(request.inputs) == 1:
            [name] = self.inputs
            return {name: self._tensor(name, request.inputs[0].as_numpy())}
        feeds = {}
        for name in self.inputs:
            infer_input = request.get_input_by_name(name)
            feeds[name] = self._tensor(name, None if infer_input is None else infer_input.as_numpy())
        return feeds

    def _tensor(self, name: str, data: object) -> np.ndarray:
        if data is None:
            raise InvalidInput(f"missing input {name!r}")
        try:
            return np.asarray(data, dtype=self.inputs[name])
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"input {name!r}: {exc}") from exc


def _tensor_metadata(nodes) -> list[dict]:
    """V2 model-metadata tensors; a dimension the graph leaves open (None or a name) is -1."""
    return [
        {
            "name": node.name,
            "datatype": from_np_dtype(np.dtype(DTYPES.get(node.type, np.float32))),
            "shape": [dim if isinstance(dim, int) else -1 for dim in node.shape],
        }
        for node in nodes
    ]
