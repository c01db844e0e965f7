"""``salseg bench robustness RESULT [--noise 0.1 0.2] [--jitter]``: Dice/HD95 under noise and jitter."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from salseg_cli.app import bench_app, console
from salseg_cli.progress import rich_progress
from salseg_cli.tables import Column, TableData, print_table


def _f(v, fmt) -> str:
    return "–" if v is None or v != v else format(v, fmt)


def robustness_table(out: dict) -> TableData:
    t = TableData(title=f"robustness of {out['network']} + {out['module']} ({out['config']}, folds "
                    f"{', '.join(out['folds'])}, {out['conditions'][0]['n_cases']} validation cases)",
                  caption="noise std in units of the normalised image; drop = clean - perturbed (Dice), "
                          "perturbed - clean (HD95)",
                  columns=[Column("condition"), Column("Dice", justify="right"), Column("Dice drop", "drop", "right"),
                           Column("HD95 (mm)", "HD95", "right"), Column("HD95 increase", "HD95 +", "right")])
    for r in out["conditions"]:
        t.add_row(r["name"], _f(r["dice"], ".4f"), _f(r["dice_drop"], "+.4f"), _f(r["hd95"], ".2f"),
                  _f(r["hd95_increase"], "+.2f"))
    return t


@bench_app.command("robustness", deprecated_aliases={"--output": "--json", "-o": "--json"})
def bench_robustness_command(
    result: Path = typer.Argument(..., help="A fold folder (.../fold_0) or an experiment folder (folds pooled)."),
    noise: List[float] = typer.Option([0.1, 0.2], "--noise", help="Gaussian noise std(s) on the normalised image."),
    jitter: bool = typer.Option(True, "--jitter/--no-jitter", help="Also brightness/contrast/gamma jitter."),
    seed: int = typer.Option(0, "--seed", help="Seed of the noise and jitter draws."),
    mirroring: bool = typer.Option(True, "--mirroring/--no-mirroring", help="Mirroring TTA (as validation)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    output: Optional[Path] = typer.Option(None, "--json", help="Write the records as JSON here (default RESULT/robustness.json)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Re-predict RESULT's validation cases with noise and jitter; Dice and HD95 with the drop from clean input."""
    from salseg.bench.robustness import robustness

    with rich_progress(enabled=not quiet) as progress:
        out = robustness(result, noise=noise, jitter=jitter, seed=seed, mirroring=mirroring, device=device,
                         output=output, progress=progress)
    print_table(robustness_table(out), console)
    console.print(f"wrote {out['path']}", highlight=False, soft_wrap=True)
