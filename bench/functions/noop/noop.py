"""A function that does nothing: what the runner itself costs per event."""

from zeroserve import ArtifactCreated, Context, on


@on(ArtifactCreated)
async def noop(created: ArtifactCreated, ctx: Context) -> None:
    return None
