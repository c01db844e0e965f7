"""A benchmark's tables as data ``{title, headers, rows, note}`` and their Markdown (``table.md``); the HTML report
renders the same data (salseg.bench.report).

The results table has one row per network, module (and position): mean ± SD of the foreground Dice and HD95 --
over seeds when the grid has several, else over folds --, the increase over the network's ``none`` and, when the
grid holds ``stack``, over ``stack`` for every slice module, with the Holm-corrected p and verdict of each
comparison (salseg.bench.collect chooses the pairs, salseg.stats tests them).
"""

from __future__ import annotations

from typing import Sequence

from salseg import results as R
from salseg.bench.collect import NONE, STACK
from salseg.stats.export import warnings as stats_warnings
from salseg.stats.format import mean_sd, num, p_value


def _f(v, digits=3) -> str:
    return num(v, f".{digits}f")


def _pm(mean, std, digits=3) -> str:
    return mean_sd(mean, std, f".{digits}f")


def _signed(v, digits=3) -> str:
    return num(v, f"+.{digits}f")


def warning_text(stats: list[dict]) -> str:
    """The comparisons' warnings as sentences (empty without any)."""
    return "".join(f" **Warning:** {w}." for w in stats_warnings(stats))


def combo_name(rec: dict) -> str:
    return rec["module"] if not rec.get("position") else f"{rec['module']}@{rec['position']}"


def _verdict_cells(r: dict, ref: str, record: dict | None) -> list[str]:
    """(p (Holm), verdict) of ``r`` against baseline ``ref``: the record's, 'reference' on the baseline's own
    row, '–' where no comparison was made."""
    if record:
        return [p_value(record["p_corrected"]), record["verdict"]]
    return ["–", "reference" if r["module"] == ref and not r.get("position") else "–"]


def _results_table(summary: list[dict], stats: list[dict], names: dict[str, str]) -> dict:
    labels = sorted({k[len("dice_"):] for r in summary for k in r
                     if k.startswith("dice_") and k[len("dice_"):].isdigit()}, key=int)
    by_pair = {(s["method"], s["reference"]): s for s in stats}
    with_stack = any(r["module"] == STACK for r in summary)
    rows = []
    for r in summary:
        exp = R.experiment_name(r["network"], r["module"], r["config"], r.get("position"))
        refs = {ref: R.experiment_name(r["network"], ref, r["config"]) for ref in (NONE, STACK)}
        row = [r["network"], combo_name(r), ",".join(map(str, r["folds"])),
               ",".join(map(str, r.get("seeds", [0]))), str(r["n_cases"]),
               _pm(r["dice_mean"], r["dice_mean_std"]), _signed(r["dice_increase"])]
        if with_stack:
            row.append(_signed(r.get("dice_increase_vs_stack")))
        row += [_pm(r["hd95_mean"], r["hd95_mean_std"], 2), _signed(r["hd95_increase"], 2)]
        row += [_pm(r.get(f"dice_{lab}"), r.get(f"dice_{lab}_std")) for lab in labels]
        row += _verdict_cells(r, NONE, by_pair.get((exp, refs[NONE])))
        if with_stack:
            row += _verdict_cells(r, STACK, by_pair.get((exp, refs[STACK])))
        rows.append(row)
    headers = ["Network", "Module", "Folds", "Seeds", "Cases", "Dice", "Δ Dice vs none"]
    headers += ["Δ Dice vs stack"] if with_stack else []
    headers += ["HD95 (mm)", "Δ HD95"] + [f"Dice {names.get(lab, lab)}" for lab in labels]
    headers += ["p vs none (Holm)", "Verdict vs none"]
    headers += ["p vs stack (Holm)", "Verdict vs stack"] if with_stack else []
    over = "seeds (each seed's mean over its folds)" if any(r.get("sd_over") == "seeds" for r in summary) \
        else "folds"
    note = (f"Dice and HD95: foreground mean on the validation cases (original geometry), mean ± SD over {over}. "
            "Δ: the network's `none` subtracted"
            + (" (and `stack`, for the slice modules)" if with_stack else "") + ". p and verdict: salseg's one "
            "decision on the per-case mean foreground Dice of the pooled validation cases (per patient when cases "
            "share one) -- a paired t-test with one seed per arm, the mixed model with runs as a unit of replication "
            "with 2+ seeds (docs/evaluation.md, How salseg decides) --, module vs `none`"
            + (" and slice module vs `stack`" if with_stack else "")
            + ", Holm-corrected over all comparisons of the table (salseg.stats)." + warning_text(stats))
    return {"title": "Results", "headers": headers, "rows": rows, "note": note}


def build_tables(summary: list[dict], stats: list[dict], eff: list[dict], names: dict[str, str]) -> list[dict]:
    """Tables as data ``{title, headers, rows, note}``; rendered to Markdown and HTML alike."""
    tables = [_results_table(summary, stats, names)]
    if stats:
        tables.append({"title": "Significance (salseg.stats)",
                       "headers": ["Method", "Reference", "n", "Mean diff [95% CI]", "t", "p", "p (Holm)", "Verdict"],
                       "rows": [[s["method"], s["reference"], str(s["n"]),
                                 f"{_signed(s['mean_diff'], 4)} [{_signed(s['ci_low'], 4)}, {_signed(s['ci_high'], 4)}]",
                                 _f(s["statistic"], 3), p_value(s["p"]), p_value(s["p_corrected"]), s["verdict"]]
                                for s in stats],
                       "note": "Per-case mean foreground Dice, method minus reference; positive = the method scores "
                               "higher; CI and t from the paired t-test (one seed per arm) or the mixed model (2+ "
                               "seeds). All rows are one Holm family." + warning_text(stats)})
    if eff:
        def pct(v):
            return "" if v is None else f" ({v:+.1f}%)"
        tables.append({"title": "Efficiency (model as trained)",
                       "headers": ["Network", "Module", "Input", "Params", "GFLOPs", "Latency (ms)"],
                       "rows": [[e["network"], combo_name(e), "x".join(map(str, e["input_shape"])),
                                 f"{e['params']:,}{pct(e.get('params_increase_pct'))}",
                                 f"{e['flops'] / 1e9:.3f}{pct(e.get('flops_increase_pct'))}",
                                 f"{e['latency_ms']:.1f}{pct(e.get('latency_ms_increase_pct'))}"] for e in eff],
                       "note": "FLOPs = 2 x MACs (conv/matmul, torch.utils.flop_counter) at the trained patch size; "
                               f"latency: median of {eff[0]['repeats']} forward passes, batch 1, CPU, 1 thread. "
                               "(+%) over `none`."})
    return tables


def tables_markdown(title: str, intro: Sequence[str], tables: list[dict], notes: Sequence[str]) -> str:
    def cell(s):
        return str(s).replace("|", "\\|")

    out = [f"# {title}", ""] + list(intro) + [""]
    for t in tables:
        out += [f"## {t['title']}", "", "| " + " | ".join(map(cell, t["headers"])) + " |",
                "|" + "|".join("---" for _ in t["headers"]) + "|"]
        out += ["| " + " | ".join(map(cell, r)) + " |" for r in t["rows"]]
        out += ["", t["note"], ""]
    if notes:
        out += ["## Not in the table", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(out)
