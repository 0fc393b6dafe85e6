"""A function that answers each event with one output event: the shortest useful round trip."""

from zeroserve import ArtifactCreated, ArtifactStatus, Context, on


@on(ArtifactCreated)
async def echo(created: ArtifactCreated, ctx: Context) -> None:
    await ctx.emit(ArtifactStatus(id=created.id or ctx.event_id, status="registered", url=created.url),
                   subject=created.id)
