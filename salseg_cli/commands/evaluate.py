"""`salseg evaluate PRED_DIR REF_DIR`: the metrics of salseg.evaluate per label (and per instance) -> summary.json
+ CSV."""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional

import typer

from salseg_cli.app import app, console
from salseg_cli.progress import rich_progress
from salseg_cli.tables import Column, TableData, print_table


def _num(x, digits: int = 4) -> str:
    x = float(x)
    return "nan" if math.isnan(x) else f"{x:.{digits}f}"


SHOWN = ("Dice", "IoU", "HD95", "HD95_MR", "ASSD", "NSD", "BoundaryIoU", "clDice", "F1", "PQ", "MatchedDice")
MM = ("HD95", "HD95_MR", "ASSD")


def summary_table(summary: dict, title: str = "mean over cases", names: dict | None = None) -> TableData:
    """Per-label means of a summary dict (the same numbers as summary.json), foreground mean last.
    ``names`` maps label values (as strings) to display names (default: summary.json's ``label_names``, from
    dataset.json)."""
    names = summary.get("label_names") if names is None else names
    keys = [k for k in SHOWN if k in summary["foreground_mean"]]
    cols = [Column("label")] + [Column(k + (" (mm)" if k in MM else ""), k if k in MM else None, "right")
                                for k in keys]
    table = TableData(title=title, columns=cols + [Column("cases with ref", "n ref", "right")])
    for label, m in summary["mean"].items():
        n_with_ref = sum(1 for c in summary["metric_per_case"] if c["metrics"][label]["n_ref"] > 0)
        shown = label_shown(label, names)
        table.add_row(shown, *[_num(m[k]) for k in keys], str(n_with_ref))
    table.add_row("foreground mean", *[_num(summary["foreground_mean"][k]) for k in keys], "", bold=True)
    return table


def label_shown(label: str, names: dict | None) -> str:
    """``femur (1)`` where the label has a name, else the value."""
    return f"{names[label]} ({label})" if names and label in names else label


@app.command(aliases={"--nsd-tolerance": "--nsd-tolerances"})
def evaluate(
    pred_dir: Path = typer.Argument(..., help="Folder of predicted label maps."),
    ref_dir: Path = typer.Argument(..., help="Folder of reference label maps (files paired by name)."),
    reference_suffix: Optional[str] = typer.Option(None, "--reference-suffix", help="References are named "
                                                   "<case><SUFFIX><ending>, e.g. --reference-suffix _label pairs "
                                                   "Case3_label.nii.gz with Case3.nii.gz (default: the same name, "
                                                   "else the one suffix every reference shares)."),
    labels: Optional[List[int]] = typer.Option(None, "--labels", help="Label values to evaluate, e.g. --labels 1 2 3 "
                                               "(default: dataset.json beside REF_DIR, else every value in the "
                                               "references)."),
    metrics: Optional[List[str]] = typer.Option(None, "--metrics", help="Any of: dice iou precision recall rvd hd "
                                                "hd95 hd95_mr assd masd nsd boundary_iou cldice f1 pq matched_dice, "
                                                "or 'all' (default: every metric except boundary_iou, cldice and the "
                                                "instance metrics; see docs/evaluation.md)."),
    nsd_tolerance: Optional[List[str]] = typer.Option(None, "--nsd-tolerances", help="NSD tolerance in mm: one value "
                                                      "for every label (default 1.0), or per label LABEL:MM, e.g. "
                                                      "--nsd-tolerances 1:2.0 2:1.0 (a plain number among them is "
                                                      "the tolerance of the other labels; also spelled "
                                                      "--nsd-tolerance)."),
    boundary_width: float = typer.Option(2.0, "--boundary-width", help="Boundary IoU: width in mm of the boundary "
                                         "region inside each mask (metric boundary_iou)."),
    instances: bool = typer.Option(False, "--instances", help="Also score instances: connected components of each "
                                   "label matched by IoU > --match-iou: TP/FP/FN, F1, PQ, matched Dice."),
    instance_maps: bool = typer.Option(False, "--instance-maps", help="The label maps are instance maps (one value "
                                       "per instance, e.g. GlaS glands): instances as given; semantic metrics on "
                                       "foreground = value > 0 (label 1). Implies --instances."),
    match_iou: float = typer.Option(0.5, "--match-iou", help="IoU above which a predicted and a reference instance "
                                    "match (0.5 to <1; one-to-one)."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Worker processes."),
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
    """Score predictions against references per label: Dice, IoU, precision, recall, volume difference, HD,
    HD95 (medpy) and HD95_MR (Metrics Reloaded), ASSD, MASD, NSD; optionally boundary IoU, clDice and instance
    scores (spacing from the headers).

    Options that take several values are written space-separated: --labels 1 2 3 --metrics dice hd95.
    """
    from salseg.evaluate import DEFAULT_METRICS, INSTANCE_METRICS, evaluate_folders

    if thresholds:
        _evaluate_thresholds(pred_dir, ref_dir, thresholds, labels, json_out, allow_missing)
        return
    chosen = list(metrics or DEFAULT_METRICS) + (list(INSTANCE_METRICS) if instances or instance_maps else [])
    with rich_progress() as progress:
        summary = evaluate_folders(pred_dir, ref_dir, labels=labels or None, metrics=chosen,
                                   nsd_tolerance=nsd_tolerance or None, num_workers=jobs, progress=progress,
                                   output=json_out, empty=empty, allow_missing=allow_missing,
                                   boundary_width=boundary_width, match_iou=match_iou, instance_maps=instance_maps,
                                   reference_suffix=reference_suffix)
    n = len(summary["metric_per_case"])
    shown = ", ".join(label_shown(str(v), summary.get("label_names")) for v in summary["labels"])
    print_table(summary_table(summary, title=f"{n} case(s), labels {shown}"), console)
    if summary.get("reference_suffix"):
        console.print(f"references paired by the suffix {summary['reference_suffix']!r}", highlight=False)
    n_imputed = sum(len(c.get("imputed") or {}) for c in summary["metric_per_case"])
    if n_imputed:
        console.print(f"{n_imputed} case/label pair(s) with a missing structure: surface distances set to the image "
                      f"diagonal (--empty worst; see 'imputed' in summary.json)", highlight=False)
    out = Path(json_out) if json_out else Path(pred_dir) / "summary.json"
    console.print(f"wrote {out} and {out.with_suffix('.csv')}", highlight=False, soft_wrap=True)


def thresholds_table(summary: dict) -> TableData:
    table = TableData(title="mean over thresholds", columns=[Column("label"), Column("Dice", justify="right"),
                                                             Column("IoU", justify="right")])
    for label, m in summary["mean"].items():
        table.add_row(label_shown(label, summary.get("label_names")), _num(m["Dice"]), _num(m["IoU"]))
    table.add_row("foreground mean", _num(summary["foreground_mean"]["Dice"]),
                  _num(summary["foreground_mean"]["IoU"]), bold=True)
    return table


def _evaluate_thresholds(pred_dir: Path, ref_dir: Path, thresholds, labels, json_out, allow_missing) -> None:
    from salseg.evaluate.thresholds import evaluate_probabilities

    summary = evaluate_probabilities(pred_dir, ref_dir, thresholds=thresholds, labels=labels or None,
                                     output=json_out, allow_missing=allow_missing)
    console.print(f"{len(summary['metric_per_case'])} case(s): Dice/IoU averaged over thresholds "
                  f"{', '.join(f'{t:g}' for t in summary['thresholds'])}", highlight=False)
    print_table(thresholds_table(summary), console)
    out = Path(json_out) if json_out else Path(pred_dir) / "summary_thresholds.json"
    console.print(f"wrote {out}", highlight=False)
