"""`salseg plan DATASET`: check, fingerprint and plan a raw dataset (fingerprint.json, plans.json, splits.json)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from salseg_cli.app import app, console, root_dir
from salseg_cli.progress import rich_progress
from salseg_cli.tables import Column, TableData, show


def plans_table(plans: dict) -> TableData:
    cols = [Column("config"), Column("spacing"), Column("patch"), Column("batch", justify="right"),
            Column("median shape", "median"), Column("stages", justify="right"), Column("normalisation", "norm")]
    table = TableData(title=f"{plans['dataset_name']} ({plans.get('plans_name', 'plans')}): "
                            f"{plans['num_channels']} channel(s), labels {plans['label_values']}", columns=cols,
                      caption="spacing in mm (z x y x x); K = neighbouring slices of 2.5d; normalisation per "
                              "channel (ZScore, CT, ...; /mask: within the foreground mask)")
    for name, c in plans["configurations"].items():
        norm = [n.removesuffix("Normalization") + ("/mask" if m else "")
                for n, m in zip(c["normalization"], c.get("use_mask_for_norm", []) or [False] * 99)]
        table.add_row(name + (f" K={c['neighbours']}" if c.get("neighbours") else ""),
                      "x".join(f"{s:.3g}" for s in c["spacing"]), "x".join(str(p) for p in c["patch_size"]),
                      str(c["batch_size"]), "x".join(f"{m:g}" for m in c["median_shape"]),
                      str(len(c["pool_op_kernel_sizes"])), ", ".join(norm))
    return table


@app.command()
def plan(
    dataset: str = typer.Argument(..., help="Dataset name, full name (Dataset027_ACDC) or id (27)."),
    preset: str = typer.Option("default", "--preset", help="Planner preset: default (nnU-Net's planner, unet), "
                               "resenc-m / resenc-l / resenc-xl (nnU-Net's ResEnc planners, 8 / 24 / 40 GB); "
                               "`salseg list presets`."),
    gpu_memory: Optional[float] = typer.Option(None, "--gpu-memory", help="GPU memory target in GB for patch/batch "
                                               "size (default: the preset's, 8 GB for default)."),
    configs: Optional[List[str]] = typer.Option(None, "--configs", "-c", help="Configurations to plan, space-separated: "
                                                "2d 2.5d 3d_fullres (default: all that fit the data)."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Worker processes."),
    seed: int = typer.Option(0, "--seed", help="Seed for the splits and the intensity sampling."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the plans (the table's source) here."),
) -> None:
    """Check the dataset, fingerprint it, and write plans.json, splits.json and fingerprint.json.

    Several configurations are written space-separated: --configs 2d 3d_fullres.
    """
    from salseg.plan import plan_dataset
    from salseg.results import preprocessed_dir

    with rich_progress() as progress:
        plans = plan_dataset(root_dir(), dataset, gpu_memory_gb=gpu_memory, configs=configs or None,
                             num_workers=jobs, seed=seed, preset=preset, progress=progress)
    show(plans_table(plans), console, json_out, plans)
    console.print(f"wrote fingerprint.json, plans.json (plans {plans.get('plans_name', 'plans')!r}, network "
                  f"{plans.get('network', 'unet')}), splits.json in "
                  f"{preprocessed_dir(root_dir(), plans['dataset_name'])}", highlight=False)
