"""The commands on artifacts: ``artifacts``, the list of registered models and data sets, and
``models compare``, two models' quality metrics side by side.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from zeroserve.cli.listing import Listing, WatchOption, listed
from zeroserve.cli.options import GroupOption, client_for
from zeroserve.cli.output import Format, OutputOption, console, err, failures, when
from zeroserve.client import Artifact

# SAP's metric label naming the artifact a metric describes: the column says that already.
ARTIFACT_NAME_LABEL = "metrics.ai.sap.com/Artifact.name"


ARTIFACTS = Listing[Artifact](["ID", "NAME", "KIND", "URL", "CREATED"],
                    lambda a: [a.id, a.name, a.kind, a.url, when(a.created_at)], lambda a: a.id)


def artifacts(group: GroupOption = None, watch: WatchOption = False, output: OutputOption = Format.table) -> None:
    """List the registered artifacts (models, data sets)."""
    with failures(), client_for(group) as zs:
        def read() -> list[Artifact]:
            return sorted(zs.artifacts(), key=lambda a: a.created_at or datetime.min.replace(tzinfo=UTC))

        listed(read, ARTIFACTS, output, watch)


models_app = typer.Typer(help="Compare models (artifacts) by their quality metrics.", no_args_is_help=True)


@models_app.command("compare")
def compare(
    first: Annotated[str, typer.Argument(help="An artifact id.")],
    second: Annotated[str, typer.Argument(help="Another artifact id.")],
    group: GroupOption = None,
) -> None:
    """Show two models' metrics side by side, with the difference."""
    with failures(), client_for(group) as zs:
        names = {artifact_id: zs.artifact(artifact_id).name for artifact_id in (first, second)}
        found = {entry.artifact_id: entry.metrics for entry in zs.metrics([first, second])}
    values: dict[str, dict[str, float]] = {}
    for artifact_id in (first, second):
        for metric in found.get(artifact_id, []):
            label = metric.name + "".join(f" {label.name}={label.value}" for label in metric.labels
                                          if label.name != ARTIFACT_NAME_LABEL)
            values.setdefault(label, {})[artifact_id] = metric.value
    if not values:
        err.print(f"neither {first} nor {second} has metrics (artifact.created's `metrics` records them)")
        raise typer.Exit(1)
    table = Table("METRIC", f"{first} ({names[first]})", f"{second} ({names[second]})", "DIFFERENCE",
                  box=None, header_style="bold", pad_edge=False)
    for label in sorted(values):
        a, b = values[label].get(first), values[label].get(second)
        difference = f"{b - a:+.4g}" if a is not None and b is not None else ""
        table.add_row(label, "" if a is None else f"{a:.4g}", "" if b is None else f"{b:.4g}", difference)
    console.print(table, soft_wrap=True)
