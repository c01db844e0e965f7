"""``salseg synth [NAME] [--kind acdc|brats|brats-labels|sparse] --cases N --seed S [--id ID]``: write a synthetic
dataset."""

from __future__ import annotations

from typing import Optional

import typer

from salseg.synthetic_kinds import generate
from salseg_cli.app import app, console, root_dir
from salseg_cli.progress import rich_progress


@app.command(deprecated_aliases={"-n": "--cases"})
def synth(
    name: Optional[str] = typer.Argument(None, help="Dataset name (default SynthACDC, SynthBraTS, SynthBraTSLabels, "
                                         "SynthSparse by kind)."),
    kind: str = typer.Option("acdc", "--kind", help="acdc (cardiac, classes), brats (4 MRI channels, nested "
                             "regions), brats-labels (the same as plain classes), sparse (cardiac, ignore label on "
                             "2 of 3 slices; dense imagesTs/labelsTs)."),
    cases: int = typer.Option(20, "--cases", help="Number of training cases (acdc/sparse: frames, 2 per patient)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed -> identical files)."),
    dataset_id: Optional[int] = typer.Option(None, "--id", help="Dataset id (default 901 SynthACDC, 902 SynthBraTS, "
                                             "903 SynthBraTSLabels, 904 SynthSparse)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing dataset folder."),
) -> None:
    """Write a synthetic dataset (default: cardiac cine MRI with ACDC labels) as a raw dataset."""
    with rich_progress() as progress:
        out = generate(root_dir(), kind=kind, name=name, cases=cases, seed=seed, dataset_id=dataset_id,
                       progress=progress, overwrite=overwrite)
    console.print(f"[green]wrote[/green] {out} ({cases} cases, seed {seed})")
