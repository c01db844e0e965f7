"""``salseg ensemble -i DIR DIR [...] -o OUT``: average saved probabilities of several models;
``salseg postprocess -i IN -o OUT --rules postprocessing.json``: apply postprocessing decided on cross-validation."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from salseg_cli.app import app, console
from salseg_cli.progress import rich_progress


@app.command("ensemble")
def ensemble_command(
    inputs: List[Path] = typer.Option(..., "--inputs", "-i", help="Two or more folders of <case>.npz + <case>.json "
                                      "probabilities (predict / train / validate --save-probabilities)."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the label maps (<case><ending>)."),
    save_probabilities: bool = typer.Option(False, "--save-probabilities",
                                            help="Also write the averaged <case>.npz (+ <case>.json)."),
    rules: Optional[Path] = typer.Option(None, "--rules", help="postprocessing.json to apply to the label maps "
                                         "(find-best writes one)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace files already in -o OUTPUT."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Average the class probabilities of the same cases from several models (folders) and write label maps:
    salseg ensemble -i pred_2d/ pred_3d/ -o ensemble/."""
    from salseg.infer.ensemble import ensemble_folders
    from salseg.infer.postprocess import read_rules

    pp = read_rules(rules) if rules is not None else None
    with rich_progress(enabled=not quiet) as progress:
        written = ensemble_folders(inputs, output, save_probabilities=save_probabilities, rules=pp,
                                   overwrite=overwrite, progress=progress)
    console.print(f"wrote {len(written)} label map(s) to {output} (mean of {len(inputs)} models"
                  f"{'; postprocessing: ' + pp.describe() if pp else ''})", highlight=False, soft_wrap=True)


@app.command("postprocess")
def postprocess_command(
    input: Path = typer.Option(..., "--input", "-i", help="Folder of label maps."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the postprocessed label maps."),
    rules: Path = typer.Option(..., "--rules", help="postprocessing.json (written by find-best)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace files already in -o OUTPUT."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Keep the largest connected component(s) as postprocessing.json says: salseg postprocess -i pred/ -o pp/
    --rules postprocessing.json."""
    from salseg.infer.postprocess import postprocess_folder, read_rules

    pp = read_rules(rules)
    with rich_progress(enabled=not quiet) as progress:
        written = postprocess_folder(input, output, pp, overwrite=overwrite, progress=progress)
    console.print(f"wrote {len(written)} label map(s) to {output} (postprocessing: {pp.describe()})",
                  highlight=False, soft_wrap=True)
