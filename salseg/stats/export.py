"""Paper-ready tables of a statistics report: Markdown and LaTeX (booktabs), one row per arm.

Columns: method, mean ± SD, difference [bootstrap 95 % CI] (method − reference), p (corrected), effect (d_z), and
the verdict (with its reason in Markdown as a footnote-like last column). The reference row of each metric/label
group comes first; a Metric column appears when the call covers several metrics, labels or datasets.
"""

from __future__ import annotations

import math

HEADERS = ["Method", "Mean ± SD", "Difference [95% bootstrap CI]", "p (corrected)", "Effect d_z", "Verdict"]


def _f(x, fmt=".4f") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return format(float(x), fmt)


def _p(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return "<0.0001" if x < 1e-4 else f"{x:.4f}"


def _group(r: dict) -> str:
    parts = [r.get("dataset") or "", r["metric"] + ("" if r.get("label") in (None, "all") else f" label {r['label']}")]
    return " ".join(p for p in parts if p)


def rows(records: list[dict]) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) shared by both formats."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(_group(r), []).append(r)
    multi = len(groups) > 1
    out = []
    for g, recs in groups.items():
        first = recs[0]
        ref = [first["reference"], f"{_f(first['mean_reference'])} ± {_f(first['std_reference'])}", "reference",
               "", "", ""]
        out.append(([g] if multi else []) + ref)
        for r in recs:
            diff = f"{_f(r['mean_diff'], '+.4f')} [{_f(r['boot_ci_low'], '+.4f')}, {_f(r['boot_ci_high'], '+.4f')}]"
            out.append(([g] if multi else []) + [
                r["method"], f"{_f(r['mean_method'])} ± {_f(r['std_method'])}", diff, _p(r["p_corrected"]),
                _f(r["effect_dz"], "+.2f"), r["verdict"]])
    return (["Metric"] if multi else []) + HEADERS, out


def to_markdown(records: list[dict]) -> str:
    headers, body = rows(records)
    lines = ["| " + " | ".join(headers) + " | Reason |", "|" + "|".join("---" for _ in range(len(headers) + 1)) + "|"]
    it = iter(records)
    for row in body:
        reason = ""
        if row[-4] != "reference":
            rec = next(it)
            reason = rec["verdict_reason"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row + [reason]) + " |")
    first = records[0]
    lines += ["", f"n paired cases per comparison: {', '.join(str(r['n']) for r in records)}. p: "
                  f"{'paired t-test' if first['test'] == 't' else 'Wilcoxon signed-rank'}, "
                  f"{first['correction']} over all {len(records)} comparisons. Difference = method − reference; "
                  f"CI: BCa bootstrap of the paired differences. d_z = mean / SD of the differences.", ""]
    return "\n".join(lines)


_LATEX_ESCAPE = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                 "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def latex_escape(s: str) -> str:
    s = "".join(_LATEX_ESCAPE.get(c, c) for c in str(s))
    return s.replace("±", r"$\pm$").replace("−", "-").replace("<", r"$<$").replace("–", "--")


def to_latex(records: list[dict]) -> str:
    headers, body = rows(records)
    first = records[0]
    cols = "l" * (len(headers) - 5) + "rrrrl"
    out = [r"% requires \usepackage{booktabs}", r"\begin{table}[t]", r"\centering",
           rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
           " & ".join(latex_escape(h) for h in headers) + r" \\", r"\midrule"]
    out += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in body]
    out += [r"\bottomrule", r"\end{tabular}",
            rf"\caption{{{latex_escape(first['metric'])}: difference = method - reference with BCa bootstrap 95\% "
            rf"CI; p: {'paired t-test' if first['test'] == 't' else 'Wilcoxon signed-rank'}, "
            rf"{latex_escape(first['correction'])}-corrected over {len(records)} comparisons.}}",
            r"\end{table}", ""]
    return "\n".join(out)
