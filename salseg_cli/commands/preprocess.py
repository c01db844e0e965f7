"""`salseg preprocess DATASET`: crop, resample and normalise every training case as planned."""

from __future__ import annotations

from typing import List, Optional

import typer

from salseg_cli.app import app, console, root_dir
from salseg_cli.progress import rich_progress


@app.command()
def preprocess(
    dataset: str = typer.Argument(..., help="Dataset name, full name (Dataset027_ACDC) or id (27)."),
    configs: Optional[List[str]] = typer.Option(None, "--configs", "-c", help="Configurations to preprocess, "
                                                "space-separated (default: all planned)."),
    plans_name: str = typer.Option("plans", "--plans", help="Plans name in plans.json (plans, plans_resencm, ...); the "
                              "presets share the preprocessed data of 2d and 3d_fullres."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Worker processes."),
    force: bool = typer.Option(False, "--force", help="Redo cases that are already preprocessed."),
) -> None:
    """Write preprocessed/<dataset>/<config>/<case>.npz + .json; finished cases are skipped on a re-run."""
    from salseg.preprocess import preprocess_dataset

    with rich_progress() as progress:
        summary = preprocess_dataset(root_dir(), dataset, configs=configs or None, num_workers=jobs, force=force,
                                     progress=progress, plans_name=plans_name)
    stale = "".join(f", {n} redone ({why})" for why, n in summary.get("stale_reasons", {}).items())
    console.print(f"{summary['dataset']}: {summary['processed']} case file(s) written{stale}, {summary['skipped']} "
                  f"already done, configurations {', '.join(summary['configs'])}", highlight=False)
    if summary.get("temp_removed"):
        console.print(f"  removed {summary['temp_removed']} temporary file(s) left by an interrupted run",
                      highlight=False)
    for ident, folder in summary["folders"].items():
        console.print(f"  {ident}: {folder}", highlight=False)
