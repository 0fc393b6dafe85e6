"""A function that does nothing: what the runner itself costs per event."""

from zeroserve.core.runner import Context, on
from zeroserve.events import ArtifactCreated


@on(ArtifactCreated)
async def noop(created: ArtifactCreated, ctx: Context) -> None:
    return None
