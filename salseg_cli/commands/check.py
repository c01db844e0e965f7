"""``salseg check DATASET [-j N]``: integrity check of a raw dataset (exit 2 and every problem, or OK)."""

from __future__ import annotations

import typer

from salseg.dataset.check import check_dataset
from salseg.dataset.dataset_json import load_dataset_json
from salseg.dataset.naming import resolve_dataset
from salseg.results import raw_dir
from salseg_cli.app import app, console, err_console, root_dir
from salseg_cli.progress import rich_progress


@app.command(deprecated_aliases={"--workers": "--jobs"})
def check(
    dataset: str = typer.Argument(..., help="Dataset name, full name (Dataset027_ACDC) or id (27)."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Worker processes."),
) -> None:
    """Check a raw dataset: readable files, channels, labels, geometry, NaN/Inf, 2D/3D mix."""
    root = root_dir()
    folder = raw_dir(root, resolve_dataset(root, dataset))
    with rich_progress() as progress:
        problems = check_dataset(folder, num_workers=jobs, progress=progress)
    if problems:
        err_console.print(f"[bold red]{len(problems)} problem(s)[/bold red] in {folder}:", highlight=False)
        for p in problems:
            err_console.print(f"  {p}", highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(2)
    info = load_dataset_json(folder)
    console.print(f"[bold green]OK[/bold green] {folder.name}: {info.num_training} training cases, "
                  f"{info.num_channels} channel(s), labels {info.label_values}", highlight=False)
