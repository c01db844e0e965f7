"""``salseg predict DATASET NETWORK -i IN -o OUT``: segment new images with trained folds."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from salseg.plans import DEFAULT_NETWORK_HELP
from salseg_cli.app import ARGUMENT, app, console, fail, network_params, one_network, root_dir
from salseg_cli.progress import rich_progress

NETWORK, NETWORK_OPTION = network_params(f"Network of the result folder (`salseg list networks`); "
                                         f"{DEFAULT_NETWORK_HELP}, as train.")


def _folds(values: list[str]) -> list[str] | None:
    from salseg.run.folds import parse_fold_spec

    if not values:
        return None  # every trained fold (and seed)
    out = []
    for v in values:
        for part in v.replace(",", " ").split():
            if parse_fold_spec(part) is None:
                fail(f"-f expects fold numbers, 'all' or seed folders such as 0_seed1, got {part!r}")
            out.append(part)
    return out


@app.command("predict", aliases={"--fold": "--folds"},
             deprecated_aliases={"-d": ARGUMENT, "--dataset": ARGUMENT})
def predict_command(
    dataset: str = typer.Argument(..., help="Dataset the model was trained on: name, full name or id."),
    network: Optional[str] = NETWORK,
    input: Path = typer.Option(..., "--input", "-i", help="Folder of <case>_0000<ending> images (or one image); "
                               "a one-channel model also reads <case><ending>."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the label maps (<case><ending>)."),
    network_option: Optional[str] = NETWORK_OPTION,
    module: str = typer.Option("none", "--module", "-m", help="Context module of the result folder."),
    config: str = typer.Option("2d", "--config", "-c", help="Plans configuration: 2d, 2.5d or 3d_fullres."),
    folds: List[str] = typer.Option([], "--folds", "-f", help="Folds to ensemble: -f 0 1 2 3 4, or all "
                                    "(the fold trained on all cases); a seed S > 0 run as 0_seed<S>. "
                                    "Default: every trained fold folder (every seed)."),
    checkpoint: str = typer.Option("final", "--checkpoint", help="final or best."),
    step: float = typer.Option(0.5, "--step", min=0.05, max=1.0, help="Sliding-window step as a patch fraction."),
    no_mirroring: bool = typer.Option(False, "--no-mirroring", help="Disable mirroring test-time augmentation."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    save_probabilities: bool = typer.Option(False, "--save-probabilities",
                                            help="Also write <case>.npz with the class probabilities."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="Diffusion networks: ddim, ddpm or dpm-solver "
                                          "(default: the network's; ddim, ddpm for medsegdiff's official presets)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Diffusion networks: sampling steps."),
    ensemble: Optional[int] = typer.Option(None, "--ensemble", min=1,
                                           help="Diffusion networks: samples averaged per case (default 1)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Diffusion networks: sampling seed (default 0)."),
    fusion: Optional[str] = typer.Option(None, "--fusion", help="Diffusion networks: how the ensemble's samples "
                                         "are combined: mean (default), staple or official."),
    save_uncertainty: bool = typer.Option(False, "--save-uncertainty",
                                          help="Diffusion networks: write <case>_uncertainty (std over samples)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace label maps already in -o OUTPUT (without it "
                                   "such a folder is refused; a raw dataset folder always is)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    position: str = typer.Option("head", "--module-position",
                                 help="Module position of the result folder: head, bottleneck, skip or parallel."),
) -> None:
    """Segment the images in -i INPUT with the trained folds of DATASET's NETWORK; label maps go to -o OUTPUT:
    salseg predict ACDC mtunet --module lstmsa -i scans/ -o out/."""
    from salseg.infer.inputs import collect_cases, naming
    from salseg.infer.options import diffusion_options
    from salseg.infer.predictor import Predictor

    network = one_network(network, network_option, required=False)
    if network is None:  # as train: the network the plans were sized for (unet without plans)
        from salseg.errors import ConfigError
        from salseg.plans import default_network

        try:
            network = default_network(root_dir(), dataset)
        except ConfigError:
            network = "unet"
    if checkpoint not in ("final", "best"):
        fail(f"--checkpoint must be final or best, got {checkpoint!r}")
    predictor = Predictor.from_results(root_dir(), dataset, network, module, config, _folds(folds),
                                       checkpoint=checkpoint, device=device, position=position)
    diffusion = diffusion_options(network, predictor.is_diffusion, sampler=sampler, steps=steps, ensemble=ensemble,
                                  seed=seed, fusion=fusion, uncertainty=save_uncertainty)
    inputs = [[input]] if input.is_file() else input
    with rich_progress(enabled=not quiet) as progress:
        written = predictor.predict_files(inputs, output, step=step, mirroring=not no_mirroring,
                                          save_probabilities=save_probabilities, diffusion=diffusion,
                                          progress=progress, overwrite=overwrite)
    console.print(f"wrote {len(written)} label map(s) to {output} "
                  f"(folds {', '.join(predictor.fold_names)}, checkpoint {checkpoint}, device {predictor.device})",
                  highlight=False, soft_wrap=True)
    if input.is_dir():
        cases = collect_cases(input, predictor.cfg.file_ending, predictor.cfg.in_channels)
        console.print(f"inputs named {naming(cases)}", highlight=False, markup=False)
