"""Progress display owned by the CLI. Library functions take a ``progress`` callback:
``progress(description: str, done: int, total: int)``; this module turns it into a rich progress bar."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from salseg_cli.app import err_console

ProgressCallback = Callable[[str, int, int], None]


@contextlib.contextmanager
def rich_progress(enabled: bool = True) -> Iterator[ProgressCallback]:
    """Yield a callback; each distinct description gets its own bar."""
    if not enabled:
        yield lambda description, done, total: None
        return
    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=err_console, transient=False)
    tasks: dict[str, int] = {}

    def update(description: str, done: int, total: int) -> None:
        if description not in tasks:
            tasks[description] = bars.add_task(description, total=total)
        bars.update(tasks[description], completed=done, total=total)

    with bars:
        yield update
