"""`salseg quickstart`: the whole chain on the embedded synthetic dataset, on a CPU budget."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from salseg_cli.app import app, console, root_dir, set_root
from salseg_cli.progress import rich_progress
from salseg_cli.tables import print_table, write_json_out


@app.command(deprecated_aliases={"-m": "--minutes"})
def quickstart(
    root: Optional[Path] = typer.Option(None, "--root", help="Data root for this run (else the global --root, "
                                        "$SALSEG_ROOT or ./salseg_data).", file_okay=False),
    minutes: float = typer.Option(5.0, "--minutes", min=0.5, help="Training budget in minutes."),
    cases: int = typer.Option(20, "--cases", min=6, help="Synthetic cases (two frames per patient)."),
    seed: int = typer.Option(0, "--seed", help="Seed for data, splits and training."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the evaluation summary (the table's "
                                            "source) here."),
) -> None:
    """synth -> plan -> preprocess -> train unet + LSTM-SA (2.5d) -> predict the held-out fold -> evaluate."""
    from salseg.quickstart import CONFIG, MODULE, NETWORK, run_quickstart
    from salseg_cli.commands.evaluate import summary_table

    if root is not None:
        set_root(root)
    console.print(f"[bold]salseg quickstart[/bold]: synthetic cardiac MRI, {NETWORK} + {MODULE} ({CONFIG}), "
                  f"about {minutes:g} min of training")
    with rich_progress() as progress:
        res = run_quickstart(root_dir(), minutes=minutes, cases=cases, seed=seed, device=device, progress=progress)
    from salseg.dataset.dataset_json import load_dataset_json
    from salseg.results import plans_file, raw_dir

    raw = raw_dir(res.root, res.dataset)
    names = {str(v): k for k, v in load_dataset_json(raw).labels.items()}
    n_cases = len(res.summary["metric_per_case"])
    print_table(summary_table(res.summary, title=f"held-out fold 0 of {res.dataset} ({n_cases} cases)",
                              names=names), console)
    write_json_out(json_out, res.summary, console)
    fg = res.summary["foreground_mean"]["Dice"]
    console.print(f"mean foreground Dice: [bold]{fg:.4f}[/bold]")
    console.print("time (s): " + ", ".join(f"{k} {v}" for k, v in res.seconds.items()))
    console.print(f"raw dataset:  {raw}\n"
                  f"plans:        {plans_file(res.root, res.dataset)}\n"
                  f"trained fold: {res.fold_dir}\n"
                  f"predictions:  {res.predictions}\n"
                  f"summary:      {res.summary_file}", highlight=False, soft_wrap=True)
