"""A custom predictor that breaks its bounds on purpose, as ``fault.json`` beside it says:

- ``{"gpu_out_of_memory": "load"}`` or ``"predict"``: raises torch's ``torch.cuda.OutOfMemoryError``
  there, with the message torch gives when a GPU is full;
- ``{"allocate": BYTES, "at": "load"}`` or ``"predict"``: takes that much memory of its own and
  holds it (at load, it then waits: it never gets ready).

Anything else: it answers what it may use, ``{"cores": N, "threads": OMP_NUM_THREADS}``.
"""

import json
import os
import time
from pathlib import Path

from kserve import Model

FAULT = json.loads((Path(__file__).parent / "fault.json").read_text())


def gpu_out_of_memory() -> None:
    import torch

    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


class Faulty(Model):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.held = b""

    def load(self) -> bool:
        print(f"faulty predictor loading: {FAULT}", flush=True)
        self.fault("load")
        self.ready = True
        return True

    def fault(self, where: str) -> None:
        if FAULT.get("gpu_out_of_memory") == where:
            gpu_out_of_memory()
        if FAULT.get("at") == where:
            print(f"allocating {FAULT['allocate']} bytes at {where}", flush=True)
            self.held = b"x" * FAULT["allocate"]  # written, so resident
            if where == "load":
                time.sleep(60)

    async def predict(self, payload, headers=None):
        self.fault("predict")
        return {"cores": len(os.sched_getaffinity(0)), "threads": os.environ.get("OMP_NUM_THREADS")}
