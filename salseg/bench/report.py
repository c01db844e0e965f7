"""``bench/<name>/``: ``results.csv``, ``table.md``, ``report.html`` (self-contained) and ``bench.json``.

The HTML report (:mod:`salseg.bench.report_html`) embeds everything: inline CSS, and PNG figures (matplotlib, Agg)
as base64 ``data:`` URIs -- verdicts first, then the per-case paired plot, the tables, rankings, efficiency,
robustness, training (times from each fold's log.jsonl, curves of every fold with 2+ validation points) and a few
prediction overlays (image slice, reference and prediction contours, a colour key, empty predictions marked).
``stats.md`` / ``stats.tex`` hold the comparisons as paper tables and ``plots/`` the ranking figures.
"""

from __future__ import annotations

import base64
import io
import logging
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from salseg import results as R
from salseg.bench import collect as C
from salseg.bench import report_html as H
from salseg.errors import ConfigError
from salseg.fileio import atomic_path, write_json

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]
OVERLAYS = 4


# --------------------------------------------------------------------------------------------------- formatting
def _f(v, digits=3) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _pm(mean, std, digits=3) -> str:
    return f"{_f(mean, digits)} ± {_f(std, digits)}"


def _signed(v, digits=3) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.{digits}f}"


def _p(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"


def _combo_name(rec: dict) -> str:
    return rec["module"] if not rec.get("position") else f"{rec['module']}@{rec['position']}"


def build_tables(summary: list[dict], stats: list[dict], eff: list[dict], names: dict[str, str]) -> list[dict]:
    """Tables as data ``{title, headers, rows, note}``; rendered to Markdown and HTML alike."""
    labels = sorted({k[len("dice_"):] for r in summary for k in r
                     if k.startswith("dice_") and k[len("dice_"):].isdigit()}, key=int)
    verdict = {s["method"]: s for s in stats}
    rows = []
    for r in summary:
        exp = R.experiment_name(r["network"], r["module"], r["config"], r.get("position"))
        s = verdict.get(exp)
        rows.append([r["network"], _combo_name(r), ",".join(map(str, r["folds"])), str(r["n_cases"]),
                     _pm(r["dice_mean"], r["dice_mean_std"]), _signed(r["dice_increase"]),
                     _pm(r["hd95_mean"], r["hd95_mean_std"], 2), _signed(r["hd95_increase"], 2)]
                    + [_pm(r.get(f"dice_{lab}"), r.get(f"dice_{lab}_std")) for lab in labels]
                    + [_p(s["p_corrected"]) if s else "–", s["verdict"] if s else ("reference" if r["module"] ==
                                                                                      "none" else "–")])
    headers = (["Network", "Module", "Folds", "Cases", "Dice", "Δ Dice vs none", "HD95 (mm)", "Δ HD95"]
               + [f"Dice {names.get(lab, lab)}" for lab in labels] + ["p (Holm)", "Verdict vs none"])
    tables = [{"title": "Results", "headers": headers, "rows": rows,
               "note": "Dice and HD95: foreground mean on the validation cases (original geometry), mean ± std over "
                       "folds. Δ: the network's `none` subtracted. p and verdict: paired t-test on the per-case "
                       "mean foreground Dice of the pooled validation cases, module vs `none`, Holm-corrected "
                       "(salseg.stats)."}]
    if stats:
        tables.append({"title": "Significance (salseg.stats)",
                       "headers": ["Method", "Reference", "n", "Mean diff [95% CI]", "t", "p", "p (Holm)", "Verdict"],
                       "rows": [[s["method"], s["reference"], str(s["n"]),
                                 f"{_signed(s['mean_diff'], 4)} [{_signed(s['ci_low'], 4)}, {_signed(s['ci_high'], 4)}]",
                                 _f(s["statistic"], 3), _p(s["p"]), _p(s["p_corrected"]), s["verdict"]]
                                for s in stats],
                       "note": "Per-case mean foreground Dice, method minus reference; positive = the module scores "
                               "higher."})
    if eff:
        def pct(v):
            return "" if v is None else f" ({v:+.1f}%)"
        tables.append({"title": "Efficiency (model as trained)",
                       "headers": ["Network", "Module", "Input", "Params", "GFLOPs", "Latency (ms)"],
                       "rows": [[e["network"], _combo_name(e), "x".join(map(str, e["input_shape"])),
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


# --------------------------------------------------------------------------------------------------- figures
def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    _plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def curves_chart(root: Path, dataset: str, combos: Sequence) -> str | None:
    from salseg.train.report import read_log

    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
    drawn = False
    for c in combos:
        recs = read_log(c.fold_dir(root, dataset) / R.LOG_JSONL)
        if not recs:
            continue
        if sum(1 for r in recs if r.get("mean_fg_dice") is not None) < 2:
            continue  # one point carries no curve
        drawn = True
        label = c.label.replace("__", " ")
        a1.plot([r["epoch"] for r in recs], [r["train_loss"] for r in recs], "-o", ms=3, label=label)
        val = [r for r in recs if r.get("mean_fg_dice") is not None]
        a2.plot([r["epoch"] for r in val], [r["mean_fg_dice"] for r in val], "-o", ms=3, label=label)
    if not drawn:
        plt.close(fig)
        return None
    a1.set(xlabel="epoch", ylabel="train loss", title="training loss")
    a2.set(xlabel="epoch", ylabel="mean fg Dice", title="validation Dice (preprocessed grid)", ylim=(0, 1))
    a2.legend(fontsize=7, loc="lower right")
    return _png(fig)


def overlay(root: Path, dataset: str, combo, names: dict[str, str]) -> tuple[str, str] | None:
    """(caption, PNG) of the first validation case of ``combo``: the slice with the most reference foreground."""
    from salseg.dataset import load_dataset_json, read_image, read_label
    from salseg.dataset.cases import channel_file

    raw = R.raw_dir(root, dataset)
    info = load_dataset_json(raw)
    val = combo.fold_dir(root, dataset) / R.VALIDATION_DIR
    preds = sorted(p for p in val.iterdir() if p.name.endswith(info.file_ending) and not p.name.startswith("."))
    for pred_path in preds:
        cid = pred_path.name[: -len(info.file_ending)]
        img_path, ref_path = channel_file(raw / "imagesTr", cid, 0, info.file_ending), raw / "labelsTr" / pred_path.name
        if not (img_path.is_file() and ref_path.is_file()):
            continue
        img, _ = read_image(img_path)
        ref, _ = read_label(ref_path)
        pred, _ = read_label(pred_path)
        if ref.shape != pred.shape or img.shape[1:] != ref.shape:
            continue
        z = int(np.argmax((ref > 0).reshape(ref.shape[0], -1).sum(1)))
        plt = _plt()
        fig, ax = plt.subplots(figsize=(4, 4))
        sl = img[:, z]
        if sl.shape[0] == 3:
            ax.imshow(np.clip(np.moveaxis(sl, 0, -1) / max(float(sl.max()), 1e-6), 0, 1))
        else:
            ax.imshow(sl[0], cmap="gray")
        values = sorted(v for v in np.unique(np.concatenate([ref[z].ravel(), pred[z].ravel()])) if v != 0)
        cmap = plt.get_cmap("tab10")
        for v in values:
            col = cmap((int(v) - 1) % 10)  # one colour per label value, as the report's colour key
            for arr, style in ((ref[z], "solid"), (pred[z], "dashed")):
                if np.any(arr == v):
                    ax.contour((arr == v).astype(float), levels=[0.5], colors=[col], linestyles=style,
                               linewidths=1.2)
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=cmap((int(v) - 1) % 10), label=str(names.get(str(v), v))) for v in values]
        handles += [Line2D([], [], color="w", ls="solid", label="— reference"),
                    Line2D([], [], color="w", ls="dashed", label="- - prediction")]
        ax.legend(handles=handles, loc="lower left", fontsize=6, framealpha=0.6, facecolor="#333", labelcolor="w")
        empty = not np.any(pred > 0)
        if empty:
            ax.text(0.5, 0.5, "EMPTY PREDICTION", transform=ax.transAxes, ha="center", va="center", color="#ff4040",
                    fontsize=11, weight="bold")
        ax.set_axis_off()
        ax.set_title(f"{combo.label}\n{cid}, slice {z}", fontsize=8)
        legend = ", ".join(f"{names.get(str(v), v)}" for v in values)
        return (f"{combo.label} · {cid} slice {z} · reference solid, prediction dashed ({legend})"
                + (" · the prediction is EMPTY (no foreground in the whole case)" if empty else "")), _png(fig)
    return None


# --------------------------------------------------------------------------------------------------- writing
def check_name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise ConfigError(f"bench name {name!r} must be a plain folder name (no slashes, not starting with '.')")
    return name


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bench(root, grid, name: str, *, efficiency: bool = True, efficiency_repeats: int = 3,
                overlays: int = OVERLAYS, progress: Progress | None = None) -> dict:
    """Collect a :class:`salseg.bench.grid.GridResult` into ``bench/<name>/`` (every file written atomically)."""
    root = R.resolve_root(root)
    out_dir = R.bench_dir(root, check_name(name))
    ds = grid.dataset
    rows, missing = C.collect_rows(root, ds, grid.combinations)
    names = C.label_names(root, ds)
    summary = C.summarise(rows)
    stats = C.significance(root, ds, grid.combinations) if rows else []
    eff = C.efficiency(root, ds, grid.combinations, repeats=efficiency_repeats, progress=progress) \
        if efficiency and rows else []
    notes = [f"invalid pair {i['network']} + {i['module']}: {i['reason']}" for i in grid.invalid]
    notes += [f"failed {f['combination'].label}: {f['error']}" for f in grid.failed]
    failed = {f["combination"].label for f in grid.failed}
    notes += [f"not finished: {m}" for m in missing if m not in failed]
    config = grid.combinations[0].config
    folds = ", ".join(dict.fromkeys(str(c.fold) for c in grid.combinations))
    grid_line = (f"{len(grid.trained)} combination(s) trained in this run ({grid.seconds:.0f} s), "
                 f"{len(grid.skipped)} already finished, {len(grid.failed)} failed, {len(grid.invalid)} invalid "
                 f"pair(s).")
    intro = [f"Dataset {ds}, configuration {config}, folds {folds}.", grid_line]
    tables = build_tables(summary, stats, eff, names)
    title = f"salseg benchmark: {name}"
    figures: dict = {"stats": stats, "names": names,
                     "overlay_values": sorted(int(v) for v in names if str(v).isdigit() and int(v) != 0)}
    if summary:
        done = [c for c in grid.combinations if c.label not in set(missing)]
        figures.update(H.extras(root, ds, done, stats, summary, eff, out_dir))
        figures["curves"] = curves_chart(root, ds, done)
        seen, shots = set(), []
        for c in done:
            key = (c.network, c.module, c.position)
            if key in seen or len(shots) >= overlays:
                continue
            seen.add(key)
            shot = overlay(root, ds, c, names)
            if shot:
                shots.append(shot)
        figures["overlays"] = shots
    files = {"results_csv": out_dir / "results.csv", "table_md": out_dir / "table.md",
             "report_html": out_dir / "report.html", "bench_json": out_dir / "bench.json"}
    md = tables_markdown(title, intro, tables, notes)
    _write_text(files["results_csv"], C.csv_text(rows))
    _write_text(files["table_md"], md)
    _write_text(files["report_html"], H.render(title, intro[:1], tables, figures, notes, grid_line))
    write_json(files["bench_json"], {"name": name, "dataset": ds, "grid": grid.to_dict(), "rows": rows,
                                     "summary": summary, "stats": stats, "efficiency": eff})
    if stats:  # paper-ready tables of the comparisons (as `salseg stats --md/--latex`)
        from salseg.stats.export import to_latex, to_markdown

        files["stats_md"], files["stats_tex"] = out_dir / "stats.md", out_dir / "stats.tex"
        _write_text(files["stats_md"], to_markdown(stats))
        _write_text(files["stats_tex"], to_latex(stats))
    log.info("benchmark %s written to %s", name, out_dir)
    return {"bench_dir": out_dir, "files": files, "table_md": md, "tables": tables, "rows": rows,
            "summary": summary, "stats": stats, "efficiency": eff, "notes": notes}
