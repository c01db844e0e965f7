"""``salseg train DATASET NETWORK [--module M]``: train one network (+ context module) on one fold."""

from __future__ import annotations

from typing import List, Optional

import typer

from salseg.plans import DEFAULT_NETWORK_HELP
from salseg.train.config import help_defaults
from salseg_cli.app import (CONFIG_HELP, app, console, network_params, one_network, parse_fold, parse_options,
                            root_dir, run_configuration)
from salseg_cli.progress import rich_progress


NETWORK, NETWORK_OPTION = network_params(f"Network (unet, resenc, mtunet, ...; `salseg list networks`); "
                                         f"{DEFAULT_NETWORK_HELP}.")
D = help_defaults()  # the values salseg.train.resolve applies (a test compares them with config.json)


@app.command("train", deprecated_aliases={"-o": "--option"})
def train_command(
    dataset: str = typer.Argument(..., help="Dataset name, full name (Dataset027_ACDC) or id."),
    network: Optional[str] = NETWORK,
    network_option: Optional[str] = NETWORK_OPTION,
    module: str = typer.Option("none", "--module", "-m", help="Context module (none, lstmsa, ...); `salseg list modules`."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help=CONFIG_HELP, show_default=False),
    plans_name: str = typer.Option("plans", "--plans", help="Plans name in plans.json: plans (default) or a preset's "
                              "(plans_resencm, plans_resencl, plans_resencxl; see `salseg plan --preset`)."),
    fold: str = typer.Option("0", "--fold", "-f", help="Fold 0-4, or 'all' to train on every case."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help=f"Epochs ({D['epochs']})."),
    iters_per_epoch: Optional[int] = typer.Option(None, "--iters-per-epoch", min=1,
                                                  help=f"Iterations per epoch ({D['iters_per_epoch']})."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help=f"Batch size per process ({D['batch_size']})."),
    patch_size: Optional[List[int]] = typer.Option(None, "--patch-size", help=f"Patch size, e.g. 96 96 ({D['patch_size']})."),
    lr: Optional[float] = typer.Option(None, "--lr", min=0.0, help=f"Initial learning rate, poly schedule ({D['lr']})."),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help=f"sgd (Nesterov), adam or adamw ({D['optimizer']})."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0,
                                       help=f"Random seed ({D['seed']}); seed S > 0 writes fold_<f>_seed<S>."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0,
                                          help="Data-loading (augmentation) worker processes (0 = in-process)."),
    resume: bool = typer.Option(False, "--continue", help="Resume from checkpoint_latest.pt."),
    keep_latest: bool = typer.Option(False, "--keep-latest",
                                     help="Keep checkpoint_latest.pt (with the optimizer state) after the fold "
                                          "finished, to --continue it with more epochs later."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the fold's finished run, once this run has "
                                   "finished (until then, and if it fails or is interrupted, the old run stays)."),
    val_every: Optional[int] = typer.Option(None, "--val-every", min=1,
                                            help=f"Validate whole cases every N epochs and after the last "
                                                 f"({D['val_every']})."),
    width: Optional[int] = typer.Option(None, "--width", min=1, help=f"Features of the first stage ({D['width']})."),
    option: List[str] = typer.Option([], "--option", help="Network/module options KEY=VALUE, space-separated."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    position: str = typer.Option("head", "--module-position",
                                 help="Where a slice module sits: head (released), bottleneck, skip or parallel."),
    level: Optional[int] = typer.Option(None, "--module-level", min=0,
                                        help="Encoder level of --module-position skip (default: the deepest skip)."),
    deep_supervision: bool = typer.Option(True, "--deep-supervision/--no-deep-supervision",
                                          help="Train on the network's auxiliary low-resolution outputs where it "
                                               "has them (config.json records what was applied)."),
    augment_device: Optional[str] = typer.Option(None, "--augment-device",
                                                 help="Augment whole batches with torch on cpu or cuda "
                                                      "(default: batchgenerators in the loader workers)."),
    time_budget: Optional[str] = typer.Option(None, "--time-budget",
                                              help="Train for this long (90s, 10m, 1h30m): the epochs and the poly "
                                                   "schedule are fitted to it (--epochs becomes a limit)."),
    warmup_epochs: Optional[int] = typer.Option(None, "--warmup-epochs", min=0,
                                                help=f"Linear learning-rate warm-up epochs ({D['warmup_epochs']})."),
    save_probabilities: bool = typer.Option(False, "--save-probabilities",
                                            help="The final validation also keeps validation/<case>.npz (softmax) "
                                                 "+ <case>.json (geometry), for ensembles and find-best."),
) -> None:
    """Train NETWORK (+ --module MODULE) on one fold of DATASET (planned and preprocessed):
    salseg train ACDC mtunet --module lstmsa."""
    from salseg.train import TrainSettings, train
    from salseg.train.budget import parse_duration
    from salseg.train.distributed import env_rank

    network = one_network(network, network_option, required=False)
    config = run_configuration(config, module, f"salseg train {dataset} {network or ''} --module {module}"
                               .replace("  ", " "))
    settings = TrainSettings(
        dataset, network, module, config=config, fold=parse_fold(fold), position=position, plans_name=plans_name,
        device=device, epochs=epochs, iters_per_epoch=iters_per_epoch, batch_size=batch_size,
        patch_size=tuple(patch_size) if patch_size else None, lr=lr, optimizer=optimizer, warmup_epochs=warmup_epochs,
        seed=seed, workers=workers, val_every=val_every, width=width,
        time_budget=parse_duration(time_budget) if time_budget is not None else None,
        augment_device=augment_device, deep_supervision=deep_supervision, save_probabilities=save_probabilities,
        keep_latest=keep_latest, options={**parse_options(option), **({"level": level} if level is not None else {})})
    main = env_rank() == 0
    with rich_progress(enabled=main and not quiet) as progress:
        out = train(root_dir(), settings, resume=resume, progress=progress, overwrite=overwrite)
    if main:
        console.print(f"results: {out}", highlight=False, soft_wrap=True)
