"""What a deployment asks of this machine, read from its InferenceService: the model (format and
storage URI), the replica bounds and concurrency target Knative would scale it by, the GPUs, CPU
and memory each replica gets (``bounds.py``), and the bounds on its requests
(``templates/limits.py``). The local backend reads the same object the kserve backend sends to a
cluster. A predictor of ``containers`` (SAP AI Core's way to run a user's own image) is read as the
``custom`` runtime: no image runs here, the model is what its ``kserve-container``'s ``STORAGE_URI``
names, and its ``predictor.py`` serves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zeroserve.errors import InvalidConfiguration
from zeroserve.serving.bounds import ReplicaBounds
from zeroserve.templates.limits import RequestLimits
from zeroserve.templates.scaling import FIXED, idle_window_of


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
    # How its last replica goes to zero: the platform's fixed window or one learned (serving/idle_window.py).
    idle_window: str = FIXED

    @classmethod
    def from_inference_service(cls, isvc: dict[str, Any]) -> ServiceSpec:
        try:
            metadata, predictor = isvc["metadata"], isvc["spec"]["predictor"]
            model_format, storage_uri, model = _served_model(predictor)
            limits = (model.get("resources") or {}).get("limits") or {}
            min_replicas = int(predictor.get("minReplicas", 0))
            max_replicas = max(int(predictor.get("maxReplicas", 1)), min_replicas, 1)
            return cls(
                group=metadata["namespace"],
                id=metadata["name"],
                model_format=model_format,
                storage_uri=storage_uri,
                min_replicas=min_replicas,
                max_replicas=max_replicas,
                target_concurrency=max(int(predictor.get("scaleTarget", 1)), 1),
                gpus=int(limits.get("nvidia.com/gpu", 0)),
                limits=RequestLimits.from_inference_service(isvc),
                bounds=ReplicaBounds.from_limits(limits),
                idle_window=idle_window_of(isvc),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidConfiguration(f"the local backend cannot read this InferenceService: {error!r}") from error


CUSTOM_FORMAT = "custom"
CUSTOM_CONTAINER = "kserve-container"
STORAGE_URI_ENV = "STORAGE_URI"


def _served_model(predictor: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """The model format, the model's storage URI, and the part of the predictor that holds its
    resources: KServe's ``model``, or a ``containers`` predictor read as the custom runtime."""
    if "model" in predictor or not predictor.get("containers"):
        model = predictor["model"]
        return model["modelFormat"]["name"].lower(), model["storageUri"], model
    containers = predictor["containers"]
    container = next((c for c in containers if c.get("name") == CUSTOM_CONTAINER), containers[0])
    storage_uri = next((e.get("value") for e in container.get("env") or []
                        if e.get("name") == STORAGE_URI_ENV and e.get("value")), None)
    if storage_uri is None:
        raise InvalidConfiguration(
            f"a predictor of containers runs on this machine as the {CUSTOM_FORMAT} runtime, which serves the "
            f"predictor.py of the artifact its container's {STORAGE_URI_ENV} names: give the "
            f"{container.get('name') or 'first'} container env {STORAGE_URI_ENV}: "
            '"{{inputs.artifacts.model}}", as SAP AI Core\'s templates do (the image itself runs only on a cluster)')
    return CUSTOM_FORMAT, storage_uri, container
