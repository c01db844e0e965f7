"""Tables that are complete at any width (80 columns, a pipe): every command prints its tables through here.

The width a table may use is the terminal's; in a pipe it is 120 columns (``COLUMNS`` overrides both). A table is
printed as it is when it fits; else with the short headers (a legend under it names them); else as CSV-like rows
(a header line, then one line per row, never wrapped), never cut with an ellipsis.
"""

from __future__ import annotations

import csv
import io
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from rich import box
from rich.console import Console
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


PIPE_WIDTH = 120  # the columns a table may use in a pipe (a file, grep, less), where no terminal says its width


def output_width(console: Console) -> int:
    """The terminal's width; in a pipe :data:`PIPE_WIDTH`; ``COLUMNS`` (or a width given to the Console) wins."""
    # rich reads COLUMNS when a Console is made and again at each use; ``_width`` is a width fixed at construction
    if console.is_terminal or console._width is not None or os.environ.get("COLUMNS", "").isdigit():
        return console.width
    return PIPE_WIDTH


def _csv_line(cells) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow([" ".join(str(c).split()) for c in cells])
    return buf.getvalue()


def _rows(data: TableData) -> list[str]:
    """The table as CSV-like lines: title, header, one line per row, caption."""
    lines = [data.title] if data.title else []
    lines += [_csv_line(c.header for c in data.columns)] + [_csv_line(row) for row in data.rows]
    return lines + ([data.caption] if data.caption else [])


def render(data: TableData, console: Console, width: int | None = None):
    """The rich table that shows every cell of ``data`` within ``width`` (default :func:`output_width`), or None
    when neither the full nor the short headers fit (then the table is printed as CSV-like rows)."""
    width = output_width(console) if width is None else width
    for short in (False, True):
        table = _rich_table(data, short)
        if _natural_width(console, table) <= width:
            return table
    return None


def print_table(data: TableData, console: Console) -> None:
    width = output_width(console)
    table = render(data, console, width)
    if table is not None:
        fixed = console._width  # console.print(width=) cannot exceed console.width: widen it for this table
        console.width = width
        try:
            console.print(table)
        finally:
            console._width = fixed
        return
    for line in _rows(data):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def print_hint(console: Console, text: str, command: str) -> None:
    """``text``, then ``command`` on its own line: a command to copy is never wrapped."""
    console.print(text, highlight=False, markup=False)
    console.print(f"  {command}", highlight=False, markup=False, soft_wrap=True)


def print_wrapped(console: Console, line: str, indent: str = "    ", first: str = "") -> None:
    """One record of prose, wrapped to the output width, continuation lines indented."""
    width = output_width(console)
    for part in textwrap.wrap(line, width=max(width, 40), initial_indent=first, subsequent_indent=first + indent,
                              break_long_words=False, break_on_hyphens=False) or [first]:
        console.print(part, highlight=False, markup=False, soft_wrap=True)


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


__all__ = ["Column", "PIPE_WIDTH", "TableData", "output_width", "print_hint", "print_markdown", "print_table",
           "print_wrapped", "render", "show", "write_json_out"]
