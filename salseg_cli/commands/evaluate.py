"""`salseg evaluate PRED_DIR REF_DIR`: Dice, IoU, HD95, ASSD, NSD per label -> summary.json + CSV."""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from salseg_cli.app import app, console, multi_value_command
from salseg_cli.progress import rich_progress


def _num(x, digits: int = 4) -> str:
    x = float(x)
    return "nan" if math.isnan(x) else f"{x:.{digits}f}"


def summary_table(summary: dict, title: str = "mean over cases", names: dict | None = None) -> Table:
    """Per-label means of a summary dict (the same numbers as summary.json), foreground mean last.
    ``names`` maps label values (as strings) to display names."""
    keys = [k for k in ("Dice", "IoU", "HD95", "ASSD", "NSD") if k in summary["foreground_mean"]]
    table = Table(title=title)
    table.add_column("label")
    for k in keys:
        table.add_column(k + (" (mm)" if k in ("HD95", "ASSD") else ""), justify="right")
    table.add_column("cases with ref", justify="right")
    for label, m in summary["mean"].items():
        n_with_ref = sum(1 for c in summary["metric_per_case"] if c["metrics"][label]["n_ref"] > 0)
        shown = f"{label} {names[label]}" if names and label in names else label
        table.add_row(shown, *[_num(m[k]) for k in keys], str(n_with_ref))
    table.add_row("foreground mean", *[_num(summary["foreground_mean"][k]) for k in keys], "", style="bold")
    return table


@app.command(cls=multi_value_command("--labels", "--metrics", "--thresholds"))
def evaluate(
    pred_dir: Path = typer.Argument(..., help="Folder of predicted label maps."),
    ref_dir: Path = typer.Argument(..., help="Folder of reference label maps (files paired by name)."),
    labels: Optional[List[int]] = typer.Option(None, "--labels", help="Label values to evaluate, e.g. --labels 1 2 3 "
                                               "(default: dataset.json beside REF_DIR, else every value in the "
                                               "references)."),
    metrics: Optional[List[str]] = typer.Option(None, "--metrics", help="Any of: dice iou hd95 assd nsd (default: "
                                                "all)."),
    nsd_tolerance: float = typer.Option(1.0, "--nsd-tolerance", help="NSD tolerance in mm."),
    jobs: int = typer.Option(1, "-j", "--jobs", min=1, help="Worker processes."),
    empty: str = typer.Option("worst", "--empty", help="Missing structures (exactly one of prediction and reference "
                              "empty): 'worst' sets HD95/ASSD to the image's diagonal in mm, 'nan' leaves them NaN "
                              "(excluded from means)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Where to write summary.json (default: "
                                            "PRED_DIR/summary.json); the CSV goes beside it."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="Score the complete pairs even when some "
                                       "references lack a prediction (or predictions a reference); summary.json "
                                       "lists them under 'missing'. Without it that is an error (exit 2)."),
    thresholds: Optional[List[float]] = typer.Option(None, "--thresholds", help="Score the probability files "
                                                     "(<case>.npz of predict --save-probabilities) at several "
                                                     "thresholds, Dice/IoU averaged over them (the official "
                                                     "MedSegDiff protocol), e.g. --thresholds 0.1 0.3 0.5 0.7 0.9; "
                                                     "writes PRED_DIR/summary_thresholds.json."),
) -> None:
    """Score predictions against references: Dice, IoU, HD95, ASSD, NSD per label (spacing from the headers).

    Options that take several values are written space-separated: --labels 1 2 3 --metrics dice hd95.
    """
    from salseg.evaluate import ALL_METRICS, evaluate_folders

    if thresholds:
        _evaluate_thresholds(pred_dir, ref_dir, thresholds, labels, json_out, allow_missing)
        return
    with rich_progress() as progress:
        summary = evaluate_folders(pred_dir, ref_dir, labels=labels or None, metrics=metrics or ALL_METRICS,
                                   nsd_tolerance=nsd_tolerance, num_workers=jobs, progress=progress,
                                   output=json_out, empty=empty, allow_missing=allow_missing)
    n = len(summary["metric_per_case"])
    console.print(summary_table(summary, title=f"{n} case(s), labels {summary['labels']}"))
    n_imputed = sum(len(c.get("imputed") or {}) for c in summary["metric_per_case"])
    if n_imputed:
        console.print(f"{n_imputed} case/label pair(s) with a missing structure: HD95/ASSD set to the image "
                      f"diagonal (--empty worst; see 'imputed' in summary.json)", highlight=False)
    out = Path(json_out) if json_out else Path(pred_dir) / "summary.json"
    console.print(f"wrote {out} and {out.with_suffix('.csv')}", highlight=False)


def _evaluate_thresholds(pred_dir: Path, ref_dir: Path, thresholds, labels, json_out, allow_missing) -> None:
    from salseg.evaluate.thresholds import evaluate_probabilities

    summary = evaluate_probabilities(pred_dir, ref_dir, thresholds=thresholds, labels=labels or None,
                                     output=json_out, allow_missing=allow_missing)
    console.print(f"{len(summary['metric_per_case'])} case(s): Dice/IoU averaged over thresholds "
                  f"{', '.join(f'{t:g}' for t in summary['thresholds'])}", highlight=False)
    table = Table()
    for col in ("label", "Dice", "IoU"):
        table.add_column(col, justify="left" if col == "label" else "right")
    for label, m in summary["mean"].items():
        table.add_row(label, _num(m["Dice"]), _num(m["IoU"]))
    table.add_row("foreground mean", _num(summary["foreground_mean"]["Dice"]),
                  _num(summary["foreground_mean"]["IoU"]), style="bold")
    console.print(table)
    out = Path(json_out) if json_out else Path(pred_dir) / "summary_thresholds.json"
    console.print(f"wrote {out}", highlight=False)
