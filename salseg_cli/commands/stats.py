"""`salseg stats`: paired comparisons (both intervals, both p-values, effect sizes, win/tie/loss), Holm, verdicts with
reasons, rankings, plots, paper tables -- from result folders, nnU-Net results, a per-case CSV or a table."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from salseg.stats.format import num as _num
from salseg.stats.format import p_value as _p
from salseg_cli.app import app, console, err_console
from salseg_cli.tables import Column, TableData, print_table


def _what(r: dict) -> str:
    return f"{r['metric']}{_label(r, 'L')}"


def _label(r: dict, plain: str) -> str:
    """`` femur (1)`` where summary.json names the label, else `` <plain><value>``; "" for the foreground mean."""
    if r.get("label") in (None, "all"):
        return ""
    return f" {r['label_name']} ({r['label']})" if r.get("label_name") else f" {plain}{r['label']}"


def short_names(names) -> dict[str, str]:
    """Display names: the ``__``-separated parts shared by every arm dropped (unet__lstmsa__2d -> lstmsa)."""
    names = list(dict.fromkeys(names))
    parts = [n.split("__") for n in names]
    if len(names) < 2 or len({len(p) for p in parts}) != 1:
        return {n: n for n in names}
    keep = [i for i in range(len(parts[0])) if len({p[i] for p in parts}) > 1]
    short = {n: "__".join(p[i] for i in keep) for n, p in zip(names, parts)}
    return short if all(short.values()) and len(set(short.values())) == len(names) else {n: n for n in names}


def _table(title: str, cols: list[str], left=("method", "metric", "verdict")) -> TableData:
    return TableData(title=title, columns=[Column(col, justify="left" if col in left else "right") for col in cols])


def _names(records: list[dict]) -> dict[str, str]:
    return short_names([r["reference"] for r in records] + [r["method"] for r in records])


def arms_table(records: list[dict]) -> TableData:
    nm = _names(records)
    table = _table("Arms on the paired cases", ["method", "metric", "n", "mean ± SD", "median (IQR)",
                                                 "ref mean ± SD"])
    for r in records:
        n = str(r["n"]) + (f" (-{r['n_nan_dropped']})" if r["n_nan_dropped"] else "")
        table.add_row(nm[r["method"]], _what(r), n, f"{_num(r['mean_method'])} ± {_num(r['std_method'])}",
                      f"{_num(r['median_method'])} ({_num(r['iqr_method'])})",
                      f"{_num(r['mean_reference'])} ± {_num(r['std_reference'])}")
    return table


def tests_table(records: list[dict]) -> TableData:
    nm = _names(records)
    title = "Both tests (p two-sided, uncorrected) and the t-interval"
    if any(r["test"] == "mixed" for r in records):
        title += " (with 2+ seeds: the mixed model's interval, no test on cases)"
    table = _table(title, ["method", "metric", "diff [t CI]", "p_t", "p_wilcoxon", "r_rb"])
    for r in records:
        table.add_row(nm[r["method"]], _what(r),
                      f"{_num(r['mean_diff'], '+.3f')} [{_num(r['ci_low'], '+.3f')}, {_num(r['ci_high'], '+.3f')}]",
                      _num(r["p_t"], ".3g"), _num(r["p_wilcoxon"], ".3g"), _num(r["effect_rank_biserial"], "+.2f"))
    return table


def records_table(records: list[dict]) -> TableData:
    first = records[0]
    nm = _names(records)
    refs = sorted({nm[r["reference"]] for r in records})
    tests = " / ".join(dict.fromkeys("mixed model" if r["test"] == "mixed" else f"{r['test']} test" for r in records))
    table = _table(f"vs {', '.join(refs)}: p_corr = {tests}, {first['correction']} over "
                   f"{len(records)} comparison(s)", ["method", "metric", "diff [boot CI]", "p_corr", "d_z",
                                                     "W/T/L", "verdict"])
    for r in records:
        table.add_row(nm[r["method"]], _what(r),
                      f"{_num(r['mean_diff'], '+.3f')} [{_num(r['boot_ci_low'], '+.3f')}, "
                      f"{_num(r['boot_ci_high'], '+.3f')}]",
                      _p(r["p_corrected"]), _num(r["effect_dz"], "+.2f"),
                      f"{r['wins']}/{r['ties']}/{r['losses']}", r["verdict"])
    return table


def ranking_table(rank: dict) -> TableData:
    lab = _label(rank, "label ")
    ds = f"{rank['dataset']}: " if rank.get("dataset") else ""
    table = _table(f"{ds}ranking by {rank['metric']}{lab} ({rank['n_cases']} cases, {rank['n_boot']} bootstraps;"
                   f" Kendall's τ median {_num(rank['kendall_tau_median'], '.2f')}, 5th percentile "
                   f"{_num(rank['kendall_tau_p05'], '.2f')})", ["method", "mean", "rank", "mean rank", "P(rank 1)"])
    nm = short_names(rank["methods"])
    order = sorted(range(len(rank["methods"])), key=lambda i: (rank["rank"][i], rank["mean_rank"][i]))
    for i in order:
        table.add_row(nm[rank["methods"][i]], _num(rank["mean"][i]), str(rank["rank"][i]),
                      _num(rank["mean_rank"][i], ".2f"), _num(rank["p_rank1"][i], ".3f"))
    return table


def _print_notes(report: dict) -> None:
    per_record = {w for r in report["records"] for w in r["warnings"]}   # printed under each verdict
    for w in (w for w in report["warnings"] if w not in per_record):
        err_console.print(f"[yellow]warning:[/yellow] {w}", highlight=False, soft_wrap=True)
    for r in report["records"]:
        who = f"{r['dataset'] + ': ' if r['dataset'] else ''}{r['method']} vs {r['reference']} ({_what(r)})"
        if r["only_in_method"] or r["only_in_reference"]:
            err_console.print(f"[yellow]{who}:[/yellow] {r['only_in_method']} only in the method, "
                              f"{r['only_in_reference']} only in the reference (not paired)", highlight=False)
        if r["n_nan_dropped"]:
            err_console.print(f"[yellow]{who}:[/yellow] {r['n_nan_dropped']} pair(s) with NaN dropped",
                              highlight=False)


@app.command(aliases={"--metric": "--metrics", "--label": "--labels"})
def stats(
    results: Optional[List[Path]] = typer.Argument(None, help="RESULT_A RESULT_B [RESULT_C ...]: fold_<f> or "
                                                   "fold_<f>_seed<S> folders, experiment folders (folds pooled, "
                                                   "seeds averaged), nnU-Net trainer folders or summary.json files; "
                                                   "A is the reference."),
    metric: Optional[List[str]] = typer.Option(None, "--metrics", help="dice iou hd95 assd nsd rvd ..., one or "
                                               "several (default dice; rvd is compared as |rvd|; in --table mode it "
                                               "only sets the direction: distances and rvd = lower is better)."),
    label: Optional[List[str]] = typer.Option(None, "--labels", metavar="LABEL ...",
                                              help="'all' (foreground mean per case), 'regions' (mean over the "
                                              "regions), label values and/or regions as their values, e.g. "
                                              "--labels all 1 2 or --labels regions '(1, 2, 3)'."),
    test: str = typer.Option("t", "--test", help="t (paired t-test) or wilcoxon (signed-rank): which p is corrected "
                             "and decides (both are always reported)."),
    correction: str = typer.Option("holm", "--correction", help="holm, bonferroni or none, over every comparison × "
                                   "label × metric of the call."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level of the verdicts."),
    empty: str = typer.Option("worst", "--empty", help="Missing structures: 'worst' (HD95/ASSD = the image "
                              "diagonal; NaN files are re-imputed) or 'nan'."),
    tie: Optional[float] = typer.Option(None, "--tie", help="|difference| counted as a tie (default 1e-3, 0.1 mm "
                                        "for the surface distances)."),
    n_boot: int = typer.Option(10000, "--n-boot", help="Bootstrap resamples of the paired differences (BCa; with 2+ "
                               "seeds hierarchical: cases and runs within arms)."),
    n_boot_rank: int = typer.Option(1000, "--n-boot-rank", help="Bootstrap resamples for the ranking (3+ methods)."),
    seed: int = typer.Option(0, "--seed", help="Seed of both bootstraps."),
    table: Optional[Path] = typer.Option(None, "--table", help="CSV with columns dataset,<pair-by>,method,value.",
                                         dir_okay=False),
    cases: Optional[Path] = typer.Option(None, "--cases", help="Long CSV with columns case,method,value "
                                         "[,metric,label,seed,group] (group: the patient of the case).",
                                         dir_okay=False),
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
    """Does a method really differ from the reference? Both intervals, both tests, effect sizes, Holm, verdicts;
    with 2+ seeds per arm a mixed model in which trained runs are a unit of replication.

    Per case:   salseg stats RESULT_A RESULT_B [RESULT_C ...] --metrics dice hd95 --labels all
    Long CSV:   salseg stats --cases cases.csv --reference nnunet
    Per table:  salseg stats --table results.csv --pair-by baseline --reference none
    """
    from salseg.stats import analyse
    from salseg.stats.export import write_report

    report = analyse(results, table=table, cases=cases, metrics=metric, labels=label, pair_by=pair_by,
                     reference=reference, test=test, correction=correction, alpha=alpha, empty=empty, tie=tie,
                     n_boot=n_boot, n_boot_rank=n_boot_rank, seed=seed)
    records = report["records"]
    _print_notes(report)
    for t in (arms_table(records), tests_table(records), records_table(records)):
        print_table(t, console)
        console.print()
    nm = _names(records)
    seeds = {}
    for r in records:
        for side in ("reference", "method"):
            if (r.get(f"n_seeds_{side}") or 1) > 1:
                seeds.setdefault((r[side], _what(r)), (r[f"n_seeds_{side}"], r[f"seed_sd_{side}"]))
    if seeds:
        console.print("seeds (between-seed SD of the arm's mean): " + "; ".join(
            f"{nm[name]} {what}: {k} seeds, SD {_num(sd)}" for (name, what), (k, sd) in seeds.items()),
            highlight=False)
    for r in records:
        how = {"mixed": f"mixed model, df {_num(r['df'], '.1f')}", "t": "paired t-test", "wilcoxon": "Wilcoxon"}
        console.print(f"{nm[r['method']]} vs {nm[r['reference']]} ({_what(r)}; {how.get(r['test'], r['test'])}): "
                      f"{r['verdict']} — {r['verdict_reason']}", highlight=False)
        for w in r["warnings"]:
            console.print(f"  warning: {w}", highlight=False)
    for rank in report["ranking"]:
        console.print()
        print_table(ranking_table(rank), console)
    written = write_report(report, json_path=json_out, csv_path=csv_out, md_path=md_out, latex_path=latex_out,
                           plots=plots, alpha=alpha)
    for p in written:
        console.print(f"wrote {p}", highlight=False)
