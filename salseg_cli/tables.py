"""Tables that are complete at any width (80 columns, a pipe): every command prints its tables through here.

A table is printed as it is when it fits; else with the short headers (a legend under it names them); else
vertically, one block of ``header: value`` lines per row, values wrapped (never cut with an ellipsis).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text


@dataclass
class Column:
    header: str
    short: str | None = None  # abbreviation used when the full header does not fit (explained in the legend)
    justify: str = "left"


@dataclass
class TableData:
    title: str
    columns: list[Column]
    rows: list[list[str]] = field(default_factory=list)
    caption: str | None = None
    bold_rows: set[int] = field(default_factory=set)  # row indices shown in bold (totals, means)

    def add_row(self, *cells, bold: bool = False) -> None:
        if bold:
            self.bold_rows.add(len(self.rows))
        self.rows.append([str(c) for c in cells])


def _rich_table(data: TableData, short: bool) -> Table:
    caption = data.caption
    if short:
        legend = "; ".join(f"{c.short} = {c.header}" for c in data.columns if c.short)
        caption = f"{legend}. {caption}" if caption else legend
    # the short form also drops the vertical rules: two spaces between columns instead of three characters
    compact = dict(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True) if short else {}
    table = Table(title=escape(data.title) or None, caption=escape(caption) if caption else None,
                  caption_justify="left", **compact)
    for c in data.columns:
        table.add_column(escape(c.short if short and c.short else c.header), justify=c.justify, no_wrap=True)
    for i, row in enumerate(data.rows):
        table.add_row(*(Text(cell) for cell in row), style="bold" if i in data.bold_rows else None)
    return table


def _natural_width(console: Console, table: Table) -> int:
    return Measurement.get(console, console.options.update(width=100_000, max_width=100_000), table).maximum


def _vertical(data: TableData) -> Group:
    key_width = max(len(c.header) for c in data.columns)
    parts: list = [Text(data.title, style="italic")]
    for i, row in enumerate(data.rows):
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True, style="bold" if i in data.bold_rows else "cyan", width=key_width + 1)
        grid.add_column(overflow="fold")
        for c, value in zip(data.columns, row):
            grid.add_row(Text(f"{c.header}:"), Text(value))
        parts += [Text(""), grid]
    if data.caption:
        parts += [Text(""), Text(data.caption, style="dim")]
    return Group(*parts)


def render(data: TableData, console: Console):
    """The renderable that shows every cell of ``data`` at ``console.width``."""
    for short in (False, True):
        table = _rich_table(data, short)
        if _natural_width(console, table) <= console.width:
            return table
    return _vertical(data)


def print_table(data: TableData, console: Console) -> None:
    console.print(render(data, console))


def write_json_out(path: Path | None, payload, console: Console) -> None:
    """``--json PATH``: write the records (atomically)."""
    if path is None:
        return
    from salseg.fileio import write_json

    write_json(path, payload)
    console.print(f"wrote {path}", highlight=False, soft_wrap=True)


def _md_cells(line: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in line.strip().strip("|").split("|")]


def print_markdown(md: str, console: Console) -> None:
    """Markdown text whose pipe tables are printed as tables that fit (other lines as they are, wrapped)."""
    lines, i = md.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        is_table = line.lstrip().startswith("|") and i + 1 < len(lines) and set(lines[i + 1].strip()) <= set("|-: ")
        if not is_table:
            console.print(line, markup=False, highlight=False)
            i += 1
            continue
        heads = _md_cells(line)
        data = TableData(title="", columns=[Column(h) for h in heads])
        i += 2
        while i < len(lines) and lines[i].lstrip().startswith("|"):
            cells = _md_cells(lines[i])
            data.add_row(*(cells + [""] * len(heads))[:len(heads)])
            i += 1
        print_table(data, console)


def show(tables: TableData | Sequence[TableData], console: Console, json_out: Path | None = None,
         payload=None) -> None:
    """Print the table(s) and write ``payload`` to ``--json``."""
    for t in [tables] if isinstance(tables, TableData) else tables:
        print_table(t, console)
    write_json_out(json_out, payload, console)


__all__ = ["Column", "TableData", "print_markdown", "print_table", "render", "show", "write_json_out"]
