"""``report.html`` of a benchmark: one self-contained file (inline CSS, PNG figures as ``data:`` URIs) that answers
"does the module beat its reference?" first and shows the evidence after it.

Sections, in order: the verdict box (every comparison: ΔDice [bootstrap CI], corrected p, n, verdict and its
reason; warnings for small n, one seed per arm, patients and empty predictions), a per-case paired plot (one line per
case from the reference to the method), the results tables, the ranking (3+ arms of one network: significance map,
rank distribution and the forest plot of every paired difference, from :mod:`salseg.stats.plots`), efficiency (Dice
against latency and GFLOPs, a legend entry per arm), robustness (``robustness.json`` of an arm, when ``bench
robustness`` wrote one), training (total training time per arm from each fold's ``log.jsonl``, so it survives
re-runs; loss/Dice curves only when there are at least two validation points), overlays (colour key per label,
reference solid, prediction dashed, empty predictions marked) and notes. Readable from 420 px up: a viewport tag,
tables scroll inside their box.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from pathlib import Path
from typing import Sequence

from salseg import results as R
from salseg.stats.format import num, p_value

SMALL_N = 6
CSS = """*{box-sizing:border-box}body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1em auto;
max-width:1100px;padding:0 .8em;color:#222;line-height:1.4}h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;
border-bottom:1px solid #ddd}.scroll{overflow-x:auto;max-width:100%}table{border-collapse:collapse;margin:.5em 0;
font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;white-space:nowrap}th{background:#f0f0f0}
td:first-child,td:nth-child(2),th{text-align:left}p.note{color:#555;font-size:12px}figure{display:inline-block;
margin:.5em 0;max-width:100%}figcaption{font-size:11px;color:#555}img{max-width:100%;height:auto}
code{background:#f3f3f3;padding:0 3px;border-radius:3px}.verdict{display:flex;flex-wrap:wrap;gap:.6em}
.card{border:1px solid #ccc;border-left:6px solid #888;border-radius:4px;padding:.5em .8em;flex:1 1 300px;
min-width:0}.card.better{border-left-color:#1a9850}.card.worse{border-left-color:#d73027}.card b{font-size:1.05em}
.warn{color:#8a5300}.key span{display:inline-block;margin-right:1em;font-size:12px}.key i{display:inline-block;
width:12px;height:12px;margin-right:4px;vertical-align:middle}"""


# --------------------------------------------------------------------------------------------------- helpers
def text(s) -> str:
    """Escaped text with Markdown inline code (`x`) rendered as <code>."""
    parts = re.split(r"`([^`]*)`", str(s))
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def file_png(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def img(b64: str, alt: str, caption: str | None = None) -> str:
    return (f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'
            f"<figcaption>{text(caption or alt)}</figcaption></figure>")


def table(t: dict) -> str:
    head = "".join(f"<th>{text(h)}</th>" for h in t["headers"])
    body = "".join("<tr>" + "".join(f"<td>{text(c)}</td>" for c in r) + "</tr>" for r in t["rows"])
    return (f"<h3>{text(t['title'])}</h3><div class=scroll><table><thead><tr>{head}</tr></thead><tbody>{body}"
            f"</tbody></table></div><p class=note>{text(t.get('note', ''))}</p>")


def section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{html.escape(title)}</h2>{body}</section>'


def short(name: str) -> str:
    """unet__lstmsa__2.5d -> unet + lstmsa."""
    parts = name.split("__")
    return f"{parts[0]} + {parts[1]}" if len(parts) == 3 else name


# --------------------------------------------------------------------------------------------------- data
def empty_predictions(root: Path, dataset: str, combos: Sequence) -> dict[str, dict]:
    """Per experiment: validation cases whose prediction is empty for every label, and (case, label) pairs where
    the reference has the structure and the prediction has none (from each fold's summary.json)."""
    out: dict[str, dict] = {}
    for c in combos:
        path = c.fold_dir(root, dataset) / R.VALIDATION_DIR / R.SUMMARY_JSON
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        exp = R.experiment_name(c.network, c.module, c.config, c.position)
        rec = out.setdefault(exp, {"cases": 0, "empty_cases": [], "missed": 0})
        for case in summary.get("metric_per_case", []):
            labs = {k: m for k, m in case.get("metrics", {}).items() if str(k) != "0"}
            rec["cases"] += 1
            if labs and all(m.get("n_pred", 1) == 0 for m in labs.values()):
                rec["empty_cases"].append(Path(case.get("prediction_file", "?")).name)
            rec["missed"] += sum(1 for m in labs.values() if m.get("n_pred", 1) == 0 and m.get("n_ref", 0) > 0)
    return out


def training_seconds(root: Path, dataset: str, combos: Sequence) -> dict[str, float]:
    """Per experiment: total training time of its finished folds/seeds (sum of ``epoch_time`` in log.jsonl)."""
    out: dict[str, float] = {}
    for c in combos:
        path = c.fold_dir(root, dataset) / R.LOG_JSONL
        if not path.is_file():
            continue
        total = 0.0
        for line in path.read_text().splitlines():
            try:
                total += float(json.loads(line).get("epoch_time", 0.0))
            except (ValueError, AttributeError, TypeError):
                continue
        exp = R.experiment_name(c.network, c.module, c.config, c.position)
        out[exp] = out.get(exp, 0.0) + total
    return out


def robustness_results(root: Path, dataset: str, combos: Sequence) -> dict[str, dict]:
    """``robustness.json`` of each experiment (or of its fold folders) when ``bench robustness`` wrote one."""
    out = {}
    for c in combos:
        exp_dir = c.experiment_dir(root, dataset)
        for path in (exp_dir / "robustness.json", c.fold_dir(root, dataset) / "robustness.json"):
            if exp_dir.name not in out and path.is_file():
                try:
                    out[exp_dir.name] = json.loads(path.read_text())
                except ValueError:
                    pass
    return out


# --------------------------------------------------------------------------------------------------- sections
def verdict_box(stats: list[dict], empty: dict[str, dict]) -> str:
    if not stats:
        return section("verdict", "Verdict", "<p>No comparison: the grid needs a reference arm (<code>none</code> "
                                             "or <code>stack</code>) and a module of the same network.</p>")
    cards = []
    for s in stats:
        v = s.get("verdict", "")
        warn = []
        if (s.get("n") or 0) < SMALL_N:
            warn.append(f"only n = {s.get('n')} paired cases: too few to separate methods reliably")
        warn += list(s.get("warnings") or [])
        for arm in (s["method"], s["reference"]):
            e = empty.get(arm)
            if e and (e["empty_cases"] or e["missed"]):
                warn.append(f"{short(arm)}: {len(e['empty_cases'])} of {e['cases']} validation prediction(s) empty "
                            f"(all folds and seeds), {e['missed']} structure(s) missed")
        diff = (f"ΔDice {num(s.get('mean_diff'), '+.4f')} [{num(s.get('boot_ci_low'), '+.4f')}, "
                f"{num(s.get('boot_ci_high'), '+.4f')}]")
        cls = v if v in ("better", "worse") else "ns"
        cards.append(f'<div class="card {cls}"><b>{html.escape(short(s["method"]))} vs '
                     f'{html.escape(short(s["reference"]))}: {html.escape(v)}</b><br>{html.escape(diff)} · '
                     f'p<sub>corr</sub> {p_value(s.get("p_corrected"))} · n {s.get("n")}<br>'
                     f'<small>{text(s.get("verdict_reason", ""))}</small>'
                     + "".join(f'<br><small class=warn>⚠ {text(w)}</small>' for w in warn) + "</div>")
    note = ("<p class=note>Per-case mean foreground Dice of the pooled validation cases (per patient when cases "
            "share one), method − reference; one seed per arm: paired t-test and BCa bootstrap; 2+ seeds: mixed "
            "model with runs as a unit of replication and a bootstrap of cases and runs; 95 %; p corrected over "
            "every comparison of the grid. \"better\"/\"worse\" need at least 6 units, p<sub>corr</sub> &lt; 0.05 "
            "and a bootstrap interval excluding 0 (docs/evaluation.md, How salseg decides).</p>")
    return section("verdict", "Verdict", f"<div class=verdict>{''.join(cards)}</div>{note}")


def paired_plot(stats: list[dict], values: dict[str, dict[str, float]]) -> str | None:
    """One panel per comparison: a line per case from the reference's value to the method's."""
    pairs = [s for s in stats if s["method"] in values and s["reference"] in values]
    if not pairs:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(pairs), figsize=(2.6 * len(pairs) + 0.6, 3.4), squeeze=False, sharey=True)
    for ax, s in zip(axes[0], pairs):
        a, b = values[s["reference"]], values[s["method"]]
        for cid in sorted(set(a) & set(b)):
            ya, yb = a[cid], b[cid]
            if math.isnan(ya) or math.isnan(yb):
                continue
            col = "#1a9850" if yb > ya else ("#d73027" if yb < ya else "#777777")
            ax.plot([0, 1], [ya, yb], "-o", color=col, ms=3, lw=1, alpha=0.8)
        ax.set_xticks([0, 1], [short(s["reference"]).split(" + ")[-1], short(s["method"]).split(" + ")[-1]])
        ax.set_xlim(-0.3, 1.3)
        ax.set_title(f"{short(s['method'])}\nvs {short(s['reference'])}", fontsize=8)
    axes[0][0].set_ylabel("per-case mean foreground Dice")
    fig.tight_layout()
    return png(fig)


def efficiency_plot(summary: list[dict], eff: list[dict]) -> str | None:
    """Dice against latency and against GFLOPs, one marker per arm with a legend."""
    dice = {(r["network"], r["module"], r.get("position")): r.get("dice_mean") for r in summary}
    pts = [(e, dice.get((e["network"], e["module"], e.get("position")))) for e in eff]
    pts = [(e, d) for e, d in pts if d is not None and not math.isnan(d)]
    if not pts:
        return None
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    markers = "osD^vP*Xh"
    for i, (e, d) in enumerate(pts):
        lab = f"{e['network']} + {e['module']}" + (f"@{e['position']}" if e.get("position") else "")
        kw = dict(marker=markers[i % len(markers)], s=50, label=lab)
        a1.scatter(e["latency_ms"], d, **kw)
        a2.scatter(e["flops"] / 1e9, d, **kw)
    a1.set(xlabel="CPU latency per forward pass (ms)", ylabel="mean foreground Dice")
    a2.set(xlabel="GFLOPs per forward pass")
    a2.legend(fontsize=7, loc="best")
    fig.suptitle("Accuracy against cost", fontsize=9)
    return png(fig)


def robustness_section(rob: dict[str, dict]) -> str:
    rows = []
    for exp, out in rob.items():
        for c in out.get("conditions", []):
            rows.append([short(exp), c.get("name"), str(c.get("n_cases")), num(c.get("dice"), ".4f"),
                         num(c.get("dice_drop"), "+.4f"), num(c.get("hd95"), ".2f"), num(c.get("hd95_increase"), "+.2f")])
    t = {"title": "Dice and HD95 under input perturbations (bench robustness)",
         "headers": ["Arm", "Condition", "Cases", "Dice", "Dice drop", "HD95 (mm)", "HD95 increase"], "rows": rows,
         "note": "Drop = clean − perturbed, increase = perturbed − clean: positive = worse. Noise std in units of the "
                 "normalised image."}
    return section("robustness", "Robustness", table(t))


def training_section(seconds: dict[str, float], grid_line: str, curves: str | None) -> str:
    rows = [[short(k), f"{v:.0f}"] for k, v in seconds.items()]
    body = f"<p>{text(grid_line)}</p>"
    if rows:
        body += table({"title": "Training time per arm", "headers": ["Arm", "Seconds (all folds and seeds)"],
                       "rows": rows, "note": "Sum of the epoch times in each fold's log.jsonl: the original times, "
                                             "also when a re-run skipped finished folds."})
    if curves:
        body += img(curves, "training loss and validation Dice per fold")
    return section("training", "Training", body)


def overlay_key(values: Sequence, names: dict[str, str]) -> str:
    cmap = _plt().get_cmap("tab10")
    spans = []
    for i, v in enumerate(values):
        r, g, b, _ = cmap(i % 10)
        spans.append(f'<span><i style="background:rgb({int(r * 255)},{int(g * 255)},{int(b * 255)})"></i>'
                     f"{html.escape(str(names.get(str(v), v)))}</span>")
    return ("<p class=key>" + "".join(spans) + "<span>— reference (solid)</span><span>- - prediction "
            "(dashed)</span></p>")


def page(title: str, intro: Sequence[str], sections: Sequence[str]) -> str:
    head = (f"<!DOCTYPE html><html lang=en><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{html.escape(title)}"
            f"</title><style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>")
    return "\n".join([head] + [f"<p>{text(line)}</p>" for line in intro] + [s for s in sections if s]
                     + ["</body></html>"])


# --------------------------------------------------------------------------------------------------- assembly
def ranking_figures(stats: list[dict], values: dict[str, dict[str, float]], out_dir: Path,
                    seeds: dict[str, dict] | None = None) -> list[tuple[str, str]]:
    """(caption, PNG) of the forest plot of every comparison and, per network with 3+ arms, the significance map
    and the rank distribution (its bootstrap resamples the runs too when ``seeds``, arm -> seed -> case -> value,
    has several); the PNG files are also written to ``out_dir/plots``."""
    from salseg.stats import rank_bootstrap
    from salseg.stats import plots as P

    figs = []
    if stats:
        path = P.forest(stats, out_dir / "plots" / "forest.png")
        figs.append(("every paired difference with its t-interval (thin) and BCa bootstrap interval (thick)",
                     file_png(path)))
    by_net: dict[str, dict] = {}
    for exp, vals in values.items():
        by_net.setdefault(exp.split("__")[0], {})[exp] = vals
    for net, arms in by_net.items():
        rank = rank_bootstrap(arms, seeds={a: (seeds or {}).get(a) or {} for a in arms})
        if rank is None:
            continue
        rank = {"dataset": "", "metric": "dice", "label": "all"} | rank
        rank["methods"] = [short(m) for m in rank["methods"]]
        for kind, fn in (("significance", P.significance), ("ranks", P.rank_blobs)):
            path = fn(rank, out_dir / "plots" / f"{kind}_{net}.png")
            figs.append((f"{net}: " + ("one-sided Wilcoxon p (Holm) that the row arm beats the column arm"
                                       if kind == "significance" else
                                       f"bootstrap rank distribution (Kendall's τ median "
                                       f"{num(rank['kendall_tau_median'], '.2f')})"), file_png(path)))
    return figs


def extras(root: Path, dataset: str, done: Sequence, stats: list[dict], summary: list[dict], eff: list[dict],
           out_dir: Path) -> dict:
    """Everything the report needs beyond the tables, from the finished combinations."""
    from salseg.bench import collect as C

    groups: dict[tuple, list] = {}
    for c in done:
        groups.setdefault((c.network, c.module, c.position), []).append(c)
    values, seeds = {}, {}
    for cs in groups.values():
        pv = C.pooled_values(root, dataset, cs, "dice")
        values[pv.name], seeds[pv.name] = pv.values, pv.seeds
    return {"paired": paired_plot(stats, values), "efficiency": efficiency_plot(summary, eff) if eff else None,
            "ranking": ranking_figures(stats, values, out_dir, seeds), "empty": empty_predictions(root, dataset, done),
            "seconds": training_seconds(root, dataset, done),
            "robustness": robustness_results(root, dataset, done)}


def render(title: str, intro: Sequence[str], tables: list[dict], figures: dict, notes: Sequence[str],
           grid_line: str = "") -> str:
    """The whole page; ``tables`` as built for table.md (the first one is the results table)."""
    eff_tables = [t for t in tables if t["title"].lower().startswith("efficiency")]
    other = [t for t in tables if t not in eff_tables]
    secs = [verdict_box(figures.get("stats") or [], figures.get("empty") or {})]
    if figures.get("paired"):
        secs.append(section("paired", "Per case", img(figures["paired"], "per-case paired plot",
                                                      "one line per validation case, reference → method; green: the method scores higher, "
                                                      "red: lower")))
    secs.append(section("results", "Tables", "".join(table(t) for t in other)))
    if figures.get("ranking"):
        secs.append(section("ranking", "Ranking and differences",
                            "".join(img(b64, "ranking figure", cap) for cap, b64 in figures["ranking"])))
    if eff_tables or figures.get("efficiency"):
        body = img(figures["efficiency"], "Dice against latency and GFLOPs") if figures.get("efficiency") else ""
        secs.append(section("efficiency", "Efficiency", body + "".join(table(t) for t in eff_tables)))
    if figures.get("robustness"):
        secs.append(robustness_section(figures["robustness"]))
    secs.append(training_section(figures.get("seconds") or {}, grid_line, figures.get("curves")))
    if figures.get("overlays"):
        body = overlay_key(figures.get("overlay_values") or [], figures.get("names") or {})
        body += "".join(img(b64, "prediction overlay", cap) for cap, b64 in figures["overlays"])
        secs.append(section("overlays", "Prediction overlays", body))
    if notes:
        secs.append(section("notes", "Not in the table", "<ul>" + "".join(f"<li>{text(n)}</li>" for n in notes)
                            + "</ul>"))
    return page(title, intro, secs)
