"""`salseg stats`: paired significance tests between results (per case) or across baselines (a CSV table)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import List, Optional

import typer

from salseg_cli.app import app, console, err_console, fail
from salseg_cli.tables import Column, TableData, print_table


def _num(x, fmt: str = ".4f") -> str:
    if x is None:
        return ""
    x = float(x)
    return "nan" if math.isnan(x) else format(x, fmt)


def records_table(records: list[dict]) -> TableData:
    first = records[0]
    title = f"{first['test']} test, {first['correction']} correction, metric {first['metric']}"
    if first.get("label") is not None:
        title += f", label {first['label']}"
    cols = [Column("dataset"), Column("method"), Column("reference", "ref"), Column("n", justify="right"),
            Column("method mean±sd", "method"), Column("reference mean±sd", "ref"),
            Column("diff [95% CI]", "diff"), Column("statistic", "stat", "right"), Column("p", justify="right"),
            Column("p_corr", justify="right"), Column("verdict")]
    table = TableData(title=title, columns=cols)
    for r in records:
        n = str(r["n"]) + (f" (-{r['n_nan_dropped']} NaN)" if r["n_nan_dropped"] else "")
        table.add_row(r["dataset"] or "", r["method"], r["reference"], n,
                      f"{_num(r['mean_method'])}±{_num(r['std_method'])}",
                      f"{_num(r['mean_reference'])}±{_num(r['std_reference'])}",
                      f"{_num(r['mean_diff'], '+.4f')} [{_num(r['ci_low'], '+.4f')}, {_num(r['ci_high'], '+.4f')}]",
                      _num(r["statistic"], ".3f"), _num(r["p"], ".3g"), _num(r["p_corrected"], ".3g"), r["verdict"])
    return table


def _write_csv(records: list[dict], path: Path) -> None:
    from salseg.fileio import atomic_path

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(records[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(records)
    with atomic_path(path, ".csv") as tmp:
        tmp.write_text(buf.getvalue())


@app.command()
def stats(
    results: Optional[List[Path]] = typer.Argument(None, help="RESULT_A RESULT_B [RESULT_C ...]: fold_<f> folders, "
                                                   "experiment folders (folds pooled) or summary.json files; "
                                                   "A is the reference."),
    metric: Optional[str] = typer.Option(None, "--metric", help="dice|iou|hd95|assd|nsd (default dice; in --table "
                                         "mode it only sets the direction: hd95/assd = lower is better)."),
    label: str = typer.Option("all", "--label", help="'all' (foreground mean per case) or a label value."),
    test: str = typer.Option("t", "--test", help="t (paired t-test) or wilcoxon (signed-rank)."),
    correction: str = typer.Option("holm", "--correction", help="holm, bonferroni or none."),
    table: Optional[Path] = typer.Option(None, "--table", help="CSV with columns dataset,<pair-by>,method,value.",
                                         dir_okay=False),
    pair_by: str = typer.Option("baseline", "--pair-by", help="Column that pairs the rows in --table mode."),
    reference: str = typer.Option("none", "--reference", help="Reference method in --table mode."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the records as JSON."),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="Write the records as CSV."),
) -> None:
    """Does a method significantly differ from the reference? Paired t-test or Wilcoxon, Holm-corrected.

    Per case:   salseg stats RESULT_A RESULT_B [RESULT_C ...] --metric dice --label all
    Per table:  salseg stats --table results.csv --pair-by baseline --reference none
    """
    from salseg_cli.tables import write_json_out
    from salseg.stats import compare_results, compare_table

    if table is not None:
        if results:
            fail("give either RESULT folders or --table, not both")
        records = compare_table(table, pair_by=pair_by, reference=reference, test=test, correction=correction,
                                metric=metric or "value")
    else:
        if not results or len(results) < 2:
            fail("give at least two results (the reference first), or --table FILE.csv")
        records = compare_results(results, metric=metric or "dice", label=label, test=test, correction=correction)
    for r in records:
        if r["only_in_method"] or r["only_in_reference"]:
            err_console.print(f"[yellow]{r['dataset'] + ': ' if r['dataset'] else ''}{r['method']} vs "
                              f"{r['reference']}:[/yellow] {r['only_in_method']} only in the method, "
                              f"{r['only_in_reference']} only in the reference (not paired)", highlight=False)
        if r["n_nan_dropped"]:
            err_console.print(f"[yellow]{r['method']} vs {r['reference']}:[/yellow] {r['n_nan_dropped']} pair(s) "
                              f"with NaN dropped", highlight=False)
    print_table(records_table(records), console)
    write_json_out(json_out, records, console)
    if csv_out is not None:
        _write_csv(records, csv_out)
        console.print(f"wrote {csv_out}", highlight=False)
