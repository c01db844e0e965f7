"""``salseg export-model DATASET NETWORK -c C -o MODEL.zip``: a trained model in one file (salseg.run.package)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from salseg_cli.app import CONFIG_HELP, app, console, fail, network_params, one_network, root_dir, run_configuration
from salseg_cli.commands.predict import fold_specs

NETWORK, NETWORK_OPTION = network_params("Network of the result folder; `salseg list networks`.")


@app.command("export-model", aliases={"--fold": "--folds"})
def export_model_command(
    dataset: str = typer.Argument(..., help="Dataset the model was trained on: name, full name or id."),
    network: Optional[str] = NETWORK,
    output: Path = typer.Option(..., "--output", "-o", help="The package to write (MODEL.zip)."),
    network_option: Optional[str] = NETWORK_OPTION,
    module: str = typer.Option("none", "--module", "-m", help="Context module of the result folder."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help=CONFIG_HELP, show_default=False),
    folds: List[str] = typer.Option([], "--folds", "-f", help="Folds to package (default: every trained fold)."),
    checkpoint: str = typer.Option("final", "--checkpoint", help="final or best."),
    onnx: bool = typer.Option(False, "--onnx", help="Also add one ONNX graph per fold (predict --backend "
                              "onnxruntime); a model that cannot be exported is refused, naming why."),
    opset: Optional[int] = typer.Option(None, "--opset", min=13, help="ONNX opset (default: salseg's)."),
    position: str = typer.Option("head", "--module-position",
                                 help="Module position of the result folder: head, bottleneck, skip or parallel."),
    rules: Optional[Path] = typer.Option(None, "--rules", help="postprocessing.json to package (default: the one "
                                         "find-best wrote for this experiment, results/<dataset>/find_best/"
                                         "candidates/<network>__<module>__<config>/, when it exists)."),
    no_postprocessing: bool = typer.Option(False, "--no-postprocessing", help="Leave the postprocessing rules "
                                           "out of the package."),
) -> None:
    """Package trained folds with their config, plans, labels, postprocessing rules and a SHA-256 manifest:
    salseg export-model ACDC unet -c 2d -f 0 1 -o acdc_unet.zip."""
    from salseg.run.package import export_model

    network = one_network(network, network_option)
    config = run_configuration(config, module)
    if checkpoint not in ("final", "best"):
        fail(f"--checkpoint must be final or best, got {checkpoint!r}")
    m = export_model(root_dir(), dataset, network, module, config, fold_specs(folds), output,
                     checkpoint=checkpoint, position=position, onnx=onnx, opset=opset, rules=rules,
                     postprocessing=not no_postprocessing)
    extra = f", ONNX opset {m['onnx']['opset']}" if m.get("onnx") else ""
    console.print(f"wrote {output}: {m['dataset']} {network}__{module}__{config}, folds {', '.join(m['folds'])}, "
                  f"checkpoint {checkpoint}{extra}", highlight=False, soft_wrap=True, markup=False)
    if m["postprocessing"] is not None:
        line = f"postprocessing: {m['postprocessing']} (predict --model applies them)"
    elif no_postprocessing:
        line = "postprocessing: left out (--no-postprocessing)"
    else:
        line = ("postprocessing: none packaged (no find-best rules for this experiment; find-best decides them, "
                "--rules FILE packages a file)")
    console.print(line, highlight=False, soft_wrap=True, markup=False)
