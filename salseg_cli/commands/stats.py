"""`salseg stats`: paired comparisons (both intervals, both p-values, effect sizes, win/tie/loss), Holm, verdicts with
reasons, rankings, plots, paper tables -- from result folders, nnU-Net results, a per-case CSV or a table."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from salseg_cli.app import app, console, err_console, fail, multi_value_command


def _num(x, fmt: str = ".4f") -> str:
    if x is None:
        return ""
    x = float(x)
    return "nan" if math.isnan(x) else format(x, fmt)


def _what(r: dict) -> str:
    lab = "" if r.get("label") in (None, "all") else f" L{r['label']}"
    return f"{r['metric']}{lab}"


def arms_table(records: list[dict]) -> Table:
    table = Table(title="Arms on the paired cases (mean ± SD, median [IQR])")
    for col in ("dataset", "method", "reference", "metric", "n", "method", "reference"):
        table.add_column(col, justify="right" if col == "n" else "left")
    for r in records:
        n = str(r["n"]) + (f" (-{r['n_nan_dropped']} NaN)" if r["n_nan_dropped"] else "")
        table.add_row(r["dataset"] or "", r["method"], r["reference"], _what(r), n,
                      f"{_num(r['mean_method'])}±{_num(r['std_method'])} {_num(r['median_method'])} "
                      f"[{_num(r['iqr_method'])}]",
                      f"{_num(r['mean_reference'])}±{_num(r['std_reference'])} {_num(r['median_reference'])} "
                      f"[{_num(r['iqr_reference'])}]")
    return table


def records_table(records: list[dict]) -> Table:
    first = records[0]
    table = Table(title=f"method − reference; p = {first['test']} test, {first['correction']} over "
                        f"{len(records)} comparison(s), α = {first['alpha']:g}")
    for col in ("method", "metric", "diff [t 95% CI]", "diff [bootstrap CI]", "p_t", "p_wilcoxon", "p_corr", "d_z",
                "r_rb", "W/T/L", "verdict"):
        table.add_column(col, justify="left" if col in ("method", "metric", "verdict") else "right")
    for r in records:
        table.add_row(r["method"], _what(r),
                      f"{_num(r['mean_diff'], '+.4f')} [{_num(r['ci_low'], '+.4f')}, {_num(r['ci_high'], '+.4f')}]",
                      f"[{_num(r['boot_ci_low'], '+.4f')}, {_num(r['boot_ci_high'], '+.4f')}]",
                      _num(r["p_t"], ".3g"), _num(r["p_wilcoxon"], ".3g"), _num(r["p_corrected"], ".3g"),
                      _num(r["effect_dz"], "+.2f"), _num(r["effect_rank_biserial"], "+.2f"),
                      f"{r['wins']}/{r['ties']}/{r['losses']}", r["verdict"])
    return table


def ranking_table(rank: dict) -> Table:
    lab = "" if rank.get("label") in (None, "all") else f" label {rank['label']}"
    ds = f"{rank['dataset']}: " if rank.get("dataset") else ""
    table = Table(title=f"{ds}ranking by {rank['metric']}{lab} ({rank['n_cases']} cases, {rank['n_boot']} "
                        f"bootstraps; Kendall's τ median {_num(rank['kendall_tau_median'], '.2f')}, 5th percentile "
                        f"{_num(rank['kendall_tau_p05'], '.2f')})")
    for col in ("method", "mean", "rank", "mean rank", "P(rank 1)"):
        table.add_column(col, justify="left" if col == "method" else "right")
    order = sorted(range(len(rank["methods"])), key=lambda i: (rank["rank"][i], rank["mean_rank"][i]))
    for i in order:
        table.add_row(rank["methods"][i], _num(rank["mean"][i]), str(rank["rank"][i]),
                      _num(rank["mean_rank"][i], ".2f"), _num(rank["p_rank1"][i], ".3f"))
    return table


def _write_text(path: Path, text: str, suffix: str) -> None:
    from salseg.fileio import atomic_path

    with atomic_path(path, suffix) as tmp:
        tmp.write_text(text)


def _csv_text(records: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(records[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(records)
    return buf.getvalue()


def _analyse(results, table, cases, *, metric, label, pair_by, reference, options) -> dict:
    from salseg.stats import analyse_cases, analyse_results, analyse_table

    if bool(results) + (table is not None) + (cases is not None) > 1:
        fail("give RESULT folders, --table or --cases, one of them")
    if table is not None:
        return analyse_table(table, pair_by=pair_by, reference=reference or "none",
                             metric=(metric or ["value"])[0], **options)
    if cases is not None:
        return analyse_cases(cases, reference=reference, metrics=metric or None, labels=label or None, **options)
    if not results or len(results) < 2:
        fail("give at least two results (the reference first), --table FILE.csv or --cases FILE.csv")
    return analyse_results(results, metrics=metric or ["dice"], labels=label or ["all"], **options)


def _print_notes(report: dict) -> None:
    for w in report["warnings"]:
        err_console.print(f"[yellow]warning:[/yellow] {w}", highlight=False)
    for r in report["records"]:
        who = f"{r['dataset'] + ': ' if r['dataset'] else ''}{r['method']} vs {r['reference']} ({_what(r)})"
        if r["only_in_method"] or r["only_in_reference"]:
            err_console.print(f"[yellow]{who}:[/yellow] {r['only_in_method']} only in the method, "
                              f"{r['only_in_reference']} only in the reference (not paired)", highlight=False)
        if r["n_nan_dropped"]:
            err_console.print(f"[yellow]{who}:[/yellow] {r['n_nan_dropped']} pair(s) with NaN dropped",
                              highlight=False)


@app.command(cls=multi_value_command("--metric", "--label"))
def stats(
    results: Optional[List[Path]] = typer.Argument(None, help="RESULT_A RESULT_B [RESULT_C ...]: fold_<f> or "
                                                   "fold_<f>_seed<S> folders, experiment folders (folds pooled, "
                                                   "seeds averaged), nnU-Net trainer folders or summary.json files; "
                                                   "A is the reference."),
    metric: Optional[List[str]] = typer.Option(None, "--metric", help="dice iou hd95 assd nsd, one or several "
                                               "(default dice; in --table mode it only sets the direction: "
                                               "hd95/assd = lower is better)."),
    label: Optional[List[str]] = typer.Option(None, "--label", help="'all' (foreground mean per case) and/or label "
                                              "values, e.g. --label all 1 2."),
    test: str = typer.Option("t", "--test", help="t (paired t-test) or wilcoxon (signed-rank): which p is corrected "
                             "and decides (both are always reported)."),
    correction: str = typer.Option("holm", "--correction", help="holm, bonferroni or none, over every comparison × "
                                   "label × metric of the call."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level of the verdicts."),
    empty: str = typer.Option("worst", "--empty", help="Missing structures: 'worst' (HD95/ASSD = the image "
                              "diagonal; NaN files are re-imputed) or 'nan'."),
    tie: Optional[float] = typer.Option(None, "--tie", help="|difference| counted as a tie (default 1e-3, 0.1 mm "
                                        "for hd95/assd)."),
    n_boot: int = typer.Option(10000, "--n-boot", help="Bootstrap resamples of the paired differences (BCa)."),
    n_boot_rank: int = typer.Option(1000, "--n-boot-rank", help="Bootstrap resamples for the ranking (3+ methods)."),
    seed: int = typer.Option(0, "--seed", help="Seed of both bootstraps."),
    table: Optional[Path] = typer.Option(None, "--table", help="CSV with columns dataset,<pair-by>,method,value.",
                                         dir_okay=False),
    cases: Optional[Path] = typer.Option(None, "--cases", help="Long CSV with columns case,method,value "
                                         "[,metric,label,seed].", dir_okay=False),
    pair_by: str = typer.Option("baseline", "--pair-by", help="Column that pairs the rows in --table mode."),
    reference: Optional[str] = typer.Option(None, "--reference", help="Reference method (--table: default 'none'; "
                                            "--cases: default the first method in the file)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the report (records, ranking, warnings, "
                                            "provenance) as JSON."),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="Write the records as CSV."),
    md_out: Optional[Path] = typer.Option(None, "--md", help="Write a Markdown table (paper-ready)."),
    latex_out: Optional[Path] = typer.Option(None, "--latex", help="Write a LaTeX booktabs table."),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Folder for the figures (forest plot; with 3+ "
                                         "methods a significance map and a rank-distribution plot).", file_okay=False),
) -> None:
    """Does a method really differ from the reference? Both intervals, both tests, effect sizes, Holm, verdicts.

    Per case:   salseg stats RESULT_A RESULT_B [RESULT_C ...] --metric dice hd95 --label all
    Long CSV:   salseg stats --cases cases.csv --reference nnunet
    Per table:  salseg stats --table results.csv --pair-by baseline --reference none
    """
    from salseg.fileio import write_json
    from salseg.stats.export import to_latex, to_markdown

    options = dict(test=test, correction=correction, alpha=alpha, empty=empty, tie=tie, n_boot=n_boot,
                   n_boot_rank=n_boot_rank, seed=seed)
    report = _analyse(results, table, cases, metric=metric, label=label, pair_by=pair_by, reference=reference,
                      options=options)
    records = report["records"]
    _print_notes(report)
    console.print(arms_table(records))
    console.print(records_table(records))
    for r in records:
        console.print(f"{r['method']} vs {r['reference']} ({_what(r)}): {r['verdict']} — {r['verdict_reason']}",
                      highlight=False)
    for rank in report["ranking"]:
        console.print(ranking_table(rank))
    written = []
    if plots is not None:
        from salseg.stats.plots import write_plots

        written += write_plots(report, plots, alpha)
    if json_out is not None:
        write_json(json_out, report)
        written.append(json_out)
    if csv_out is not None:
        _write_text(csv_out, _csv_text(records), ".csv")
        written.append(csv_out)
    if md_out is not None:
        _write_text(md_out, to_markdown(records), ".md")
        written.append(md_out)
    if latex_out is not None:
        _write_text(latex_out, to_latex(records), ".tex")
        written.append(latex_out)
    for p in written:
        console.print(f"wrote {p}", highlight=False)
