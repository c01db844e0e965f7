"""``salseg validate DATASET NETWORK -c C -f F``: re-run a finished fold's validation without training."""

from __future__ import annotations

from typing import Optional

import typer

from salseg_cli.app import CONFIG_HELP, app, console, network_params, one_network, root_dir, run_configuration
from salseg_cli.progress import rich_progress

NETWORK, NETWORK_OPTION = network_params("Network of the result folder; `salseg list networks`.")


@app.command("validate")
def validate_command(
    dataset: str = typer.Argument(..., help="Dataset name, full name or id."),
    network: Optional[str] = NETWORK,
    network_option: Optional[str] = NETWORK_OPTION,
    module: str = typer.Option("none", "--module", "-m", help="Context module of the result folder."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help=CONFIG_HELP, show_default=False),
    fold: str = typer.Option(..., "--fold", "-f", help="Fold 0-4 (a seed S > 0 run as 0_seed<S>)."),
    checkpoint: str = typer.Option("final", "--checkpoint", help="final (writes validation/) or best (writes "
                                   "validation_best/)."),
    save_probabilities: bool = typer.Option(False, "--save-probabilities",
                                            help="Also keep <case>.npz (softmax) + <case>.json (geometry)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    position: str = typer.Option("head", "--module-position",
                                 help="Module position of the result folder: head, bottleneck, skip or parallel."),
) -> None:
    """Predict and score a trained fold's validation cases again (nnU-Net's --val):
    salseg validate ACDC unet -c 2d -f 0 --save-probabilities."""
    from salseg.train.revalidate import revalidate

    network = one_network(network, network_option)
    config = run_configuration(config, module)
    with rich_progress(enabled=not quiet) as progress:
        out, summary = revalidate(root_dir(), dataset, network, module, config, fold, checkpoint=checkpoint,
                                  save_probabilities=save_probabilities, position=position, device=device,
                                  progress=progress)
    fg = summary.get("foreground_mean", {}).get("Dice")
    console.print(f"validation of fold {fold} ({checkpoint} checkpoint): {len(summary.get('metric_per_case', []))} "
                  f"case(s), mean foreground Dice {'n/a' if fg is None else f'{fg:.4f}'} -> {out}",
                  highlight=False, soft_wrap=True)
