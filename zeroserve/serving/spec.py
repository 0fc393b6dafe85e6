"""What a deployment asks of this machine, read from its InferenceService: the model (format and
storage URI), the replica bounds and concurrency target Knative would scale it by, the GPUs, CPU
and memory each replica gets (``bounds.py``), and the bounds on its requests
(``templates/limits.py``). The local backend reads the same object the kserve backend sends to a
cluster."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zeroserve.errors import InvalidConfiguration
from zeroserve.serving.bounds import ReplicaBounds
from zeroserve.templates.limits import RequestLimits


@dataclass(frozen=True)
class ServiceSpec:
    """What the local backend reads of an InferenceService."""

    group: str
    id: str
    model_format: str
    storage_uri: str
    min_replicas: int
    max_replicas: int
    target_concurrency: int
    gpus: int
    limits: RequestLimits = field(default_factory=RequestLimits)
    # The plan's CPU and memory, which bound each replica here (serving/bounds.py).
    bounds: ReplicaBounds = field(default_factory=ReplicaBounds)

    @classmethod
    def from_inference_service(cls, isvc: dict[str, Any]) -> ServiceSpec:
        try:
            metadata, predictor = isvc["metadata"], isvc["spec"]["predictor"]
            model = predictor["model"]
            limits = (model.get("resources") or {}).get("limits") or {}
            min_replicas = int(predictor.get("minReplicas", 0))
            max_replicas = max(int(predictor.get("maxReplicas", 1)), min_replicas, 1)
            return cls(
                group=metadata["namespace"],
                id=metadata["name"],
                model_format=model["modelFormat"]["name"].lower(),
                storage_uri=model["storageUri"],
                min_replicas=min_replicas,
                max_replicas=max_replicas,
                target_concurrency=max(int(predictor.get("scaleTarget", 1)), 1),
                gpus=int(limits.get("nvidia.com/gpu", 0)),
                limits=RequestLimits.from_inference_service(isvc),
                bounds=ReplicaBounds.from_limits(limits),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidConfiguration(f"the local backend cannot read this InferenceService: {error!r}") from error
