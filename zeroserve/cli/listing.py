"""A list command's output: the records as a table, JSON or YAML (``-o``), printed once, or watched
(``-w``): read again every ``interval`` seconds and each record that is new, changed or gone printed
as one more row (one more JSON line, one more YAML document), as ``kubectl get -w`` does, until
Ctrl-C. The group has no event stream of its own to follow, so a list is read again; one
deployment's events are followed by ``status -w`` (watch.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

import typer
import yaml
from rich.table import Table
from rich.text import Text

from zeroserve.cli.output import Format, console, plain, printed

T = TypeVar("T")

# How often a watched list is read again, in seconds.
WATCH_INTERVAL_S = 2.0
WatchOption = Annotated[bool, typer.Option("--watch", "-w", help="Keep printing changes (Ctrl-C ends).")]


@dataclass
class Listing(Generic[T]):
    """How a kind of record is listed: its columns, a record's cells (rich markup allowed), its key."""

    columns: Sequence[str]
    cells: Callable[[T], Sequence[str]]
    key: Callable[[T], str]

    def table(self, records: Sequence[T]) -> Table:
        rows = [self.cells(record) for record in records]
        table = Table(box=None, header_style="bold", pad_edge=False)
        # The key column is never cut short on a narrow terminal: it is what the next command takes.
        key_width = max([len(self.columns[0]), *(Text.from_markup(row[0]).cell_len for row in rows)])
        table.add_column(self.columns[0], no_wrap=True, min_width=key_width)
        for column in self.columns[1:]:
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        return table


def show(records: Sequence[T], listing: Listing[T], output: Format) -> None:
    printed(list(records), listing.table(records), output)


def listed(read: Callable[[], Sequence[T]], listing: Listing[T], output: Format, watch: bool) -> None:
    """The records ``read`` gives, once or (``watch``) until Ctrl-C."""
    if watch:
        watch_list(read, listing, output)
    else:
        show(read(), listing, output)


def watch_list(read: Callable[[], Sequence[T]], listing: Listing[T], output: Format,
          interval: float = WATCH_INTERVAL_S) -> None:
    """Print the records, then each change as it is seen, until Ctrl-C (exit 0)."""
    records = read()
    widths = [max([len(column), *(Text.from_markup(listing.cells(r)[i]).cell_len for r in records)])
              for i, column in enumerate(listing.columns)]
    seen: dict[str, Any] = {}

    def emit(record: T | None, key: str, gone: bool = False) -> None:
        if output == Format.table:
            cells = listing.cells(record) if record is not None else [key]
            line = "   ".join(_padded(cell, width) for cell, width in zip(cells, widths, strict=False))
            console.print(line.rstrip() + ("   (gone)" if gone else ""), highlight=False, soft_wrap=True)
        elif output == Format.json:
            typer.echo(json.dumps({"type": "DELETED" if gone else "CHANGED", "object": plain(record) or {"id": key}}))
        else:
            typer.echo("---\n" + yaml.safe_dump({"type": "DELETED" if gone else "CHANGED",
                                                 "object": plain(record) or {"id": key}}, sort_keys=False), nl=False)

    if output == Format.table:
        console.print("   ".join(f"[bold]{_padded(c, w)}[/bold]" for c, w in zip(listing.columns, widths,
                                                                                   strict=True)).rstrip())
    try:
        while True:
            current = {listing.key(record): record for record in records}
            for key, record in current.items():
                if seen.get(key) != plain(record):
                    emit(record, key)
            for key in set(seen) - set(current):
                emit(None, key, gone=True)
            seen = {key: plain(record) for key, record in current.items()}
            time.sleep(interval)
            records = read()
    except KeyboardInterrupt:
        return


def _padded(cell: str, width: int) -> str:
    return cell + " " * max(width - Text.from_markup(cell).cell_len, 0)
