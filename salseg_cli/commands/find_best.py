"""``salseg find-best DATASET``: the best arm or pairwise ensemble of the finished cross-validations, postprocessing
decided on them, salseg's verdict against the runner-up, and the predict command to ship it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import List, Optional

import typer

from salseg_cli.app import app, console, err_console, root_dir
from salseg_cli.progress import rich_progress
from salseg_cli.tables import Column, TableData, print_table


def _num(x, fmt: str) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


@app.command("find-best")
def find_best_command(
    dataset: str = typer.Argument(..., help="Dataset name, full name or id."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Folder for find_best.json, "
                                          "inference_instructions.md and the candidates' predictions (default: "
                                          "results/<dataset>/find_best)."),
    arms: List[str] = typer.Option([], "--arms", help="Only these result folders (<network>__<module>__<config>); "
                                   "default: every finished cross-validation."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the result as JSON here."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Which arm or ensemble to ship, with postprocessing and a paired verdict: salseg find-best ACDC."""
    from salseg.bench.find_best import find_best
    from salseg.fileio import write_json

    with rich_progress(enabled=not quiet) as progress:
        result = find_best(root_dir(), dataset, out=output, arms=list(arms) or None, progress=progress)
    table = TableData(title=f"{result['dataset']}: {result['folds']}-fold cross-validation", columns=[
        Column("candidate"), Column("Dice", None, "right"), Column("HD95 (mm)", "HD95", "right"),
        Column("postprocessing"), Column("params", None, "right"), Column("ms/tile", None, "right")])
    for c in result["candidates"]:
        table.add_row(c["name"], _num(c["dice"], ".4f"), _num(c["hd95"], ".2f"), c["postprocessing_applied"],
                      f"{c['params']:,}", _num(c["latency_ms"], ".1f"), bold=c["name"] == result["chosen"])
    print_table(table, console)
    v = result["verdict"]
    if v:
        console.print(f"{v['method']} vs {v['reference']}: {v['summary']} ({v['reason']})", highlight=False,
                      soft_wrap=True)
    console.print(f"chosen: {result['chosen']}\n{result['predict_command']}", highlight=False, soft_wrap=True,
                  markup=False)
    for w in result["warnings"] + result["notes"]:
        err_console.print(f"warning: {w}", highlight=False, soft_wrap=True, markup=False)
    if json_out is not None:
        write_json(json_out, json.loads(json.dumps(result, default=str)))
