"""``salseg bench run DATASET -n N [N ...] -m M [M ...]``: a baseline x module x fold grid."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from salseg.train.config import help_defaults
from salseg_cli.app import bench_app, console, err_console, parse_fold, parse_options, root_dir
from salseg_cli.progress import rich_progress
from salseg_cli.tables import print_markdown, write_json_out

D = help_defaults()  # as `train --help`: the values salseg.train.resolve applies


@bench_app.command("run", aliases={"--network": "--networks", "--module": "--modules", "--fold": "--folds",
                                   "--seed": "--seeds", "--positions": "--module-positions",
                                   "--module-position": "--module-positions"},
                   deprecated_aliases={"-o": "--option"})
def bench_run_command(
    dataset: str = typer.Argument(..., help="Dataset name, full name (Dataset901_SynthACDC) or id."),
    networks: List[str] = typer.Option(..., "--networks", "-n", help="Networks, space-separated; `salseg list networks`."),
    modules: List[str] = typer.Option(["none"], "--modules", "-m",
                                      help="Modules, space-separated (include 'none' for the baseline)."),
    config: str = typer.Option("2d", "--config", "-c", help="Plans configuration: 2d, 2.5d or 3d_fullres."),
    plans_name: str = typer.Option("plans", "--plans", help="Plans name in plans.json (plans, plans_resencm, ...)."),
    folds: List[str] = typer.Option(["0"], "--folds", "-f", help="Folds, space-separated (default 0)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help=f"Epochs per run ({D['epochs']})."),
    iters_per_epoch: Optional[int] = typer.Option(None, "--iters-per-epoch", min=1, help=f"Iterations per epoch ({D['iters_per_epoch']})."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help=f"Batch size per run ({D['batch_size']})."),
    lr: Optional[float] = typer.Option(None, "--lr", min=0.0, help=f"Initial learning rate of every run ({D['lr']})."),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help=f"sgd, adam or adamw ({D['optimizer']})."),
    patch_size: Optional[List[int]] = typer.Option(None, "--patch-size", help=f"Patch size of every run, e.g. 96 96 ({D['patch_size']})."),
    width: Optional[int] = typer.Option(None, "--width", min=1, help=f"Features of the first stage ({D['width']})."),
    option: List[str] = typer.Option([], "--option",
                                     help="KEY=VALUE options, space-separated; a module's own option (features=16) goes only to the "
                                          "modules that have it."),
    seeds: List[int] = typer.Option([0], "--seeds",
                                    help="Seeds, space-separated: every combination is trained once per seed "
                                         "(seed 0 in fold_<f>, seed S in fold_<f>_seed<S>)."),
    deep_supervision: bool = typer.Option(True, "--deep-supervision/--no-deep-supervision",
                                          help="Deep supervision in every arm alike (networks without auxiliary "
                                               "outputs train without it in every arm)."),
    allow_mixed_protocol: bool = typer.Option(False, "--allow-mixed-protocol",
                                              help="Compare arms of one network trained by different recipes "
                                                   "(protocol_hash in config.json), with a warning; refused "
                                                   "otherwise."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda (local executor)."),
    executor: str = typer.Option("local", "--executor", help="local (one after the other) or ray (a task each)."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: a local Ray)."),
    name: Optional[str] = typer.Option(None, "--name", help="Output folder bench/NAME (default <dataset>__<config>)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the table's rows, the statistics "
                                            "and the grid's outcome here (bench.json has them too)."),
    no_efficiency: bool = typer.Option(False, "--no-efficiency", help="Skip params/FLOPs/latency in the report."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    positions: List[str] = typer.Option(["head"], "--module-positions",
                                        help="Slice-module positions, space-separated: head bottleneck skip parallel "
                                             "(Table V of Ji, Ye, Ma, IEEE TIP 2024); other modules run once."),
    time_budget: Optional[str] = typer.Option(None, "--time-budget",
                                              help="Training time of EACH combination (90s, 10m, 1h30m); epochs "
                                                   "and schedule are fitted to it by the same rule for every arm."),
) -> None:
    """Train every valid NETWORK x MODULE x FOLD x SEED combination not finished yet, then write results.csv,
    table.md and report.html under bench/NAME. Exits 1 when an arm failed (the others are still reported)."""
    from salseg.bench.grid import bench_run
    from salseg.train import TrainSettings
    from salseg.train.budget import parse_duration

    settings = TrainSettings(  # every arm alike; the grid sets each arm's network, module, fold, position, seed
        plans_name=plans_name, device=device, epochs=epochs, iters_per_epoch=iters_per_epoch, batch_size=batch_size,
        lr=lr, optimizer=optimizer, patch_size=tuple(patch_size) if patch_size else None, width=width,
        time_budget=parse_duration(time_budget) if time_budget is not None else None,
        options=parse_options(option), deep_supervision=deep_supervision)
    with rich_progress(enabled=not quiet and executor == "local") as progress:
        out = bench_run(root_dir(), dataset, networks, modules, config=config, folds=[parse_fold(f) for f in folds],
                        name=name, executor=executor, address=address, settings=settings, seeds=seeds,
                        allow_mixed_protocol=allow_mixed_protocol, efficiency=not no_efficiency,
                        progress=progress, positions=positions)
    grid = out["grid"]
    print_markdown(out["table_md"], console)
    for warning in out["protocol"]["warnings"]:
        err_console.print(f"[yellow]warning[/yellow] {escape(warning)}", highlight=False)
    for note in out["notes"]:
        err_console.print(f"[yellow]note[/yellow] {escape(note)}", highlight=False)
    console.print(f"trained {len(grid.trained)}, skipped {len(grid.skipped)} finished, {len(grid.failed)} failed, "
                  f"{len(grid.invalid)} invalid pair(s)", highlight=False)
    if len(set(seeds)) == 1:
        console.print("one seed per arm: the verdicts compare two trained models, not two methods; run with "
                      "--seeds 0 1 2 to measure seed noise", highlight=False)
    for key, path in out["files"].items():
        console.print(f"{key}: {path}", highlight=False, soft_wrap=True)
    write_json_out(json_out, {"grid": grid.to_dict(), "rows": out["rows"], "stats": out["stats"]}, console)
    if grid.failed:
        raise typer.Exit(1)
