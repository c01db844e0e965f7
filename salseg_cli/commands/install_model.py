"""``salseg install-model MODEL.zip``: unpack a model package into the data root's results."""

from __future__ import annotations

from pathlib import Path

import typer

from salseg_cli.app import app, console, root_dir


@app.command("install-model")
def install_model_command(
    package: Path = typer.Argument(..., help="The model package (a zip from export-model, or its folder)."),
) -> None:
    """Verify a model package (manifest, SHA-256 per file, safe names) and install its folds into
    results/<dataset>/<network>__<module>__<config>/ so `salseg predict DATASET NETWORK` finds them; its postprocessing
    rules go where find-best writes them (results/<dataset>/find_best/candidates/<experiment>/postprocessing.json)."""
    from salseg.run.package import install_model

    done = install_model(package, root_dir())
    console.print(f"installed {package} into {done.experiment}", highlight=False, soft_wrap=True, markup=False)
    if done.rules is not None:
        console.print(f"postprocessing rules ({done.rules_description}) -> {done.rules}; dataset-based predict "
                      f"applies them only when asked: --rules {done.rules}", highlight=False, soft_wrap=True,
                      markup=False)
