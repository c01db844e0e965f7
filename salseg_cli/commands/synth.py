"""``salseg synth [NAME] --cases N --seed S [--id ID]``: write the embedded synthetic dataset."""

from __future__ import annotations

from typing import Optional

import typer

from salseg.synthetic import DEFAULT_NAME, generate_synthetic
from salseg_cli.app import app, console, root_dir
from salseg_cli.progress import rich_progress


@app.command(deprecated_aliases={"-n": "--cases"})
def synth(
    name: str = typer.Argument(DEFAULT_NAME, help="Dataset name."),
    cases: int = typer.Option(20, "--cases", help="Number of cases (frames); patients = ceil(cases / 2)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed -> identical files)."),
    dataset_id: Optional[int] = typer.Option(None, "--id", help="Dataset id (default 901 for SynthACDC)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing dataset folder."),
) -> None:
    """Write the synthetic cardiac cine MRI dataset (ACDC labels) as a raw dataset."""
    with rich_progress() as progress:
        out = generate_synthetic(root_dir(), name=name, cases=cases, seed=seed, dataset_id=dataset_id,
                                 progress=progress, overwrite=overwrite)
    console.print(f"[green]wrote[/green] {out} ({cases} cases, seed {seed})")
