"""`salseg plan DATASET`: check, fingerprint and plan a raw dataset (fingerprint.json, plans.json, splits.json)."""

from __future__ import annotations

from typing import List, Optional

import typer
from rich.table import Table

from salseg_cli.app import app, console, root_dir
from salseg_cli.app import multi_value_command
from salseg_cli.progress import rich_progress


def plans_table(plans: dict) -> Table:
    table = Table(title=f"{plans['dataset_name']} ({plans.get('plans_name', 'plans')}): "
                        f"{plans['num_channels']} channel(s), labels {plans['label_values']}")
    for col in ("config", "spacing", "patch", "batch", "median shape", "stages", "normalisation"):
        table.add_column(col, justify="right" if col in ("batch", "stages") else "left")
    for name, c in plans["configurations"].items():
        table.add_row(name + (f" (K={c['neighbours']})" if c.get("neighbours") else ""),
                      " x ".join(f"{s:.3g}" for s in c["spacing"]), " x ".join(str(p) for p in c["patch_size"]),
                      str(c["batch_size"]), " x ".join(f"{m:g}" for m in c["median_shape"]),
                      str(len(c["pool_op_kernel_sizes"])),
                      ", ".join(n + ("/mask" if m else "") for n, m in zip(c["normalization"],
                                                                       c.get("use_mask_for_norm", []))))
    return table


@app.command(cls=multi_value_command("--configs"))
def plan(
    dataset: str = typer.Argument(..., help="Dataset name, full name (Dataset027_ACDC) or id (27)."),
    preset: str = typer.Option("default", "--preset", help="Planner preset: default (nnU-Net's planner, unet), "
                               "resenc-m / resenc-l / resenc-xl (nnU-Net's ResEnc planners, 8 / 24 / 40 GB)."),
    gpu_memory: Optional[float] = typer.Option(None, "--gpu-memory", help="GPU memory target in GB for patch/batch "
                                               "size (default: the preset's, 8 GB for default)."),
    configs: Optional[List[str]] = typer.Option(None, "--configs", help="Configurations to plan, space-separated: "
                                                "2d 2.5d 3d_fullres (default: all that fit the data)."),
    jobs: int = typer.Option(1, "-j", "--jobs", min=1, help="Worker processes."),
    seed: int = typer.Option(0, "--seed", help="Seed for the splits and the intensity sampling."),
) -> None:
    """Check the dataset, fingerprint it, and write plans.json, splits.json and fingerprint.json.

    Several configurations are written space-separated: --configs 2d 3d_fullres.
    """
    from salseg.plan import plan_dataset
    from salseg.results import preprocessed_dir

    with rich_progress() as progress:
        plans = plan_dataset(root_dir(), dataset, gpu_memory_gb=gpu_memory, configs=configs or None,
                             num_workers=jobs, seed=seed, preset=preset, progress=progress)
    console.print(plans_table(plans))
    console.print(f"wrote fingerprint.json, plans.json (plans {plans.get('plans_name', 'plans')!r}, network "
                  f"{plans.get('network', 'unet')}), splits.json in "
                  f"{preprocessed_dir(root_dir(), plans['dataset_name'])}", highlight=False)
