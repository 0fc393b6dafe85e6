"""Typed failures with a reason code.

Every failure that a user can see carries a machine-readable ``reason`` (SAP AI Core's
``statusDetails.reason``: ``ArtifactNotFound``, ``ModelLoadFailed``, ``NoGPU``, ...) next to a
human message. The runner decides what to do with an event by the failure's kind: a
``Rejected`` event can never succeed and goes straight to the dead-letter subject, anything else
is retried with back-off first.
"""

from __future__ import annotations


class ZeroserveError(Exception):
    """A failure with a reason code; retried by the runner unless it is ``Rejected``."""

    reason = "InternalError"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


def reason_of(error: BaseException) -> tuple[str, str]:
    """The reason code and message of any failure: a ZeroserveError's own, else its class name and text."""
    if isinstance(error, ZeroserveError):
        return error.reason, error.message
    return type(error).__name__, str(error)


class Rejected(ZeroserveError):
    """The input itself is wrong: retrying cannot help."""

    reason = "Rejected"


class MalformedEvent(Rejected):
    reason = "MalformedEvent"


class InvalidConfiguration(Rejected):
    reason = "InvalidConfiguration"


class InvalidTransition(Rejected):
    reason = "InvalidTransition"


class ArtifactNotFound(Rejected):
    reason = "ArtifactNotFound"



class ArtifactPending(ZeroserveError):
    """An artifact is not registered yet, but an ``artifact.created`` published before the request that
    needs it is still to be handled: retried, not refused."""

    reason = "ArtifactPending"

class InvalidArtifactUri(Rejected):
    reason = "InvalidArtifactUri"


class ArtifactTooLarge(Rejected):
    """An artifact larger than the whole model cache (``model_cache_max_bytes``): it can never be staged."""

    reason = "ArtifactTooLarge"


class ModelCacheFull(Rejected):
    """An artifact does not fit beside the ones deployments use, which are never evicted."""

    reason = "ModelCacheFull"


class NoGPU(Rejected):
    reason = "NoGPU"


class ModelLoadFailed(Rejected):
    """The model cannot be loaded: the same files will fail the same way again."""

    reason = "ModelLoadFailed"


class RuntimeNotInstalled(ModelLoadFailed):
    """The runtime of a model format needs packages this installation lacks (an extra of zeroserve,
    e.g. ``zeroserve[torch]``): the same deployment fails the same way until they are installed."""

    reason = "RuntimeNotInstalled"


class MemoryLimitExceeded(ModelLoadFailed):
    """A replica used more memory than its resource plan gives it, and was stopped: the same model
    on the same plan will do it again (a larger plan, or a smaller model)."""

    reason = "MemoryLimitExceeded"


class GpuOutOfMemory(ModelLoadFailed):
    """A replica ran out of GPU memory (loading or serving) and exited: the same model on the same
    plan will do it again (a larger GPU, or a smaller model or batch)."""

    reason = "GpuOutOfMemory"


class DeploymentNotFound(ZeroserveError):
    """Retried: the request that creates the deployment may still be on its way."""

    reason = "DeploymentNotFound"


class Unschedulable(ZeroserveError):
    reason = "Unschedulable"


class Overloaded(ZeroserveError):
    """More requests wait for a replica than the activator holds: the caller should come back later."""

    reason = "Overloaded"


class NotReady(ZeroserveError):
    """No replica became ready within the deadline."""

    reason = "ReplicaNotReady"


class ReplicaStartFailed(ZeroserveError):
    """A model-server process could not be started (the machine, not the model): may pass."""

    reason = "ReplicaStartFailed"


class ReplicaKilled(ReplicaStartFailed):
    """A model-server process was killed by a signal before it was ready (by someone, by the OOM killer)."""

    reason = "ReplicaKilled"
