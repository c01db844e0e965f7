"""The files of a statistics report: paper-ready Markdown and LaTeX (booktabs) tables, one row per arm, the records
as CSV, and :func:`write_report` for all of them (plus the JSON and the figures).

Columns: method, mean ± SD, difference [bootstrap 95 % CI] (method − reference), p (corrected), effect (d_z), and
the verdict (with its reason in Markdown as a footnote-like last column). The reference row of each metric/label
group comes first; a Metric column appears when the call covers several metrics, labels or datasets. The records'
warnings (one seed per arm, n too small, cases averaged per patient) follow the table in both formats.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from salseg.stats.format import mean_sd, num, p_value

HEADERS = ["Method", "Mean ± SD", "Difference [95% bootstrap CI]", "p (corrected)", "Effect d_z", "Verdict"]


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
        ref = [first["reference"], mean_sd(first["mean_reference"], first["std_reference"]), "reference",
               "", "", ""]
        out.append(([g] if multi else []) + ref)
        for r in recs:
            diff = f"{num(r['mean_diff'], '+.4f')} [{num(r['boot_ci_low'], '+.4f')}, {num(r['boot_ci_high'], '+.4f')}]"
            out.append(([g] if multi else []) + [
                r["method"], mean_sd(r["mean_method"], r["std_method"]), diff, p_value(r["p_corrected"]),
                num(r["effect_dz"], "+.2f"), r["verdict"]])
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
    lines += ["", f"n per comparison: {', '.join(str(r['n']) for r in records)}. {method_text(records)}", ""]
    lines += [f"**Warning:** {w}" + "  " for w in warnings(records)]
    return "\n".join(lines + ([""] if warnings(records) else []))


def method_text(records: list[dict]) -> str:
    """One sentence on how the p-values and intervals were made (the tests of the records' family)."""
    kinds = {r.get("test") for r in records}
    parts = []
    if kinds & {"t", "wilcoxon", None}:
        parts.append(f"one seed per arm: {'paired t-test' if 't' in kinds else 'Wilcoxon signed-rank'} on the "
                     f"units, BCa bootstrap of the paired differences")
    if "mixed" in kinds:
        parts.append("2+ seeds: mixed model value ~ method + (1|case) + (1|case:method) + (1|run) with Satterthwaite "
                     "df, bootstrap resampling cases and runs within arms")
    return (f"p: {'; '.join(parts)}; {records[0]['correction']} over all {len(records)} comparisons. "
            f"Difference = method − reference. d_z = mean / SD of the per-unit differences.")


def warnings(records: list[dict]) -> list[str]:
    """Every record's warnings, once each, in order."""
    return list(dict.fromkeys(w for r in records for w in (r.get("warnings") or [])))


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
    caveat = "".join(f" Warning: {latex_escape(w)}." for w in warnings(records))
    out += [r"\bottomrule", r"\end{tabular}",
            rf"\caption{{{latex_escape(first['metric'])}: difference = method - reference, bootstrap 95\% CI. "
            rf"{latex_escape(method_text(records))}{caveat}}}",
            r"\end{table}", ""]
    return "\n".join(out)


def csv_text(records: list[dict]) -> str:
    """The records as CSV (one column per key; the warnings joined by "; ")."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(records[0]), lineterminator="\n")
    w.writeheader()
    w.writerows({k: ("; ".join(v) if isinstance(v, list) else v) for k, v in r.items()} for r in records)
    return buf.getvalue()


def _write_text(path: Path, text: str, suffix: str) -> None:
    from salseg.fileio import atomic_path

    with atomic_path(Path(path), suffix) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_report(report: dict, *, json_path=None, csv_path=None, md_path=None, latex_path=None, plots=None,
                 alpha: float = 0.05) -> list[Path]:
    """Write the asked files of one report (each atomically); returns the paths written, figures first."""
    from salseg.fileio import write_json

    written: list[Path] = []
    if plots is not None:
        from salseg.stats.plots import write_plots

        written += write_plots(report, plots, alpha)
    if json_path is not None:
        write_json(json_path, report)
        written.append(Path(json_path))
    for path, text, suffix in ((csv_path, csv_text, ".csv"), (md_path, to_markdown, ".md"),
                               (latex_path, to_latex, ".tex")):
        if path is not None:
            _write_text(path, text(report["records"]), suffix)
            written.append(Path(path))
    return written
