"""``bench/<name>/``: ``results.csv``, ``table.md``, ``report.html`` (self-contained) and ``bench.json``.

The HTML report embeds everything: inline CSS, and PNG figures (matplotlib, Agg) as base64 ``data:`` URIs -- the
results table, a bar chart of the mean foreground Dice per combination, the training curves of every fold
(``log.jsonl``) and a few prediction overlays (image slice, reference and prediction contours of validation cases).
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from salseg import results as R
from salseg.bench import collect as C
from salseg.bench.protocols import check_protocols, protocol_lines
from salseg.bench.tables import build_tables, combo_name, tables_markdown
from salseg.errors import ConfigError
from salseg.fileio import atomic_path, write_json

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]
OVERLAYS = 4


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


def bar_chart(summary: list[dict]) -> str:
    plt = _plt()
    names = [f"{r['network']}\n{combo_name(r)}" for r in summary]
    means = [0.0 if math.isnan(r["dice_mean"]) else r["dice_mean"] for r in summary]
    stds = [0.0 if math.isnan(r["dice_mean_std"]) else r["dice_mean_std"] for r in summary]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(names) + 1), 3.5))
    colors = ["#888888" if r["module"] == "none" else "#3b75af" for r in summary]
    ax.bar(range(len(names)), means, yerr=stds, color=colors, capsize=4)
    for i, m in enumerate(means):
        ax.text(i, m + 0.01, f"{m:.3f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_ylabel("mean foreground Dice")
    ax.set_ylim(0, 1.05)
    ax.set_title("Dice per combination (mean ± SD)")
    return _png(fig)


def curves_chart(root: Path, dataset: str, combos: Sequence) -> str | None:
    from salseg.train.report import read_log

    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
    drawn = False
    for c in combos:
        recs = read_log(c.fold_dir(root, dataset) / R.LOG_JSONL)
        if not recs:
            continue
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
        for i, v in enumerate(values):
            col = cmap(i % 10)
            for arr, style in ((ref[z], "solid"), (pred[z], "dashed")):
                if np.any(arr == v):
                    ax.contour((arr == v).astype(float), levels=[0.5], colors=[col], linestyles=style,
                               linewidths=1.2)
        ax.set_axis_off()
        ax.set_title(f"{combo.label}\n{cid}, slice {z}", fontsize=8)
        legend = ", ".join(f"{names.get(str(v), v)}" for v in values)
        return f"{combo.label} · {cid} slice {z} · reference solid, prediction dashed ({legend})", _png(fig)
    return None


# --------------------------------------------------------------------------------------------------- HTML
CSS = """body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;
text-align:right}th{background:#f0f0f0}td:first-child,td:nth-child(2),th{text-align:left}p.note{color:#555;
font-size:12px}figure{display:inline-block;margin:.5em}figcaption{font-size:11px;color:#555;max-width:420px}
img{max-width:100%}"""


def _html_table(t: dict) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in t["headers"])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in t["rows"])
    return (f"<h2>{html.escape(t['title'])}</h2><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<p class=note>{html.escape(t['note'])}</p>")


def _img(b64: str, alt: str, caption: str | None = None) -> str:
    tag = f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'
    return f"<figure>{tag}<figcaption>{html.escape(caption or alt)}</figcaption></figure>"


def report_html(title: str, intro: Sequence[str], tables: list[dict], figures: dict, notes: Sequence[str]) -> str:
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    parts += [f"<p>{html.escape(line)}</p>" for line in intro]
    parts.append(_html_table(tables[0]))
    if figures.get("bar"):
        parts.append(_img(figures["bar"], "Dice per combination"))
    parts += [_html_table(t) for t in tables[1:]]
    if figures.get("curves"):
        parts += ["<h2>Training curves</h2>", _img(figures["curves"], "training loss and validation Dice per fold")]
    if figures.get("overlays"):
        parts.append("<h2>Prediction overlays</h2>")
        parts += [_img(png, "prediction overlay", cap) for cap, png in figures["overlays"]]
    if notes:
        parts.append("<h2>Not in the table</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes)
                     + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------------- writing
def check_name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise ConfigError(f"bench name {name!r} must be a plain folder name (no slashes, not starting with '.')")
    return name


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _first_line(text: str, limit: int = 300) -> str:
    line = (text.strip().splitlines() or [""])[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def write_bench(root, grid, name: str, *, efficiency: bool = True, efficiency_repeats: int = 3,
                overlays: int = OVERLAYS, progress: Progress | None = None,
                allow_mixed_protocol: bool = False) -> dict:
    """Collect a :class:`salseg.bench.grid.GridResult` into ``bench/<name>/`` (every file written atomically).
    The finished arms are protocol-checked first: mixed recipes within one network raise ConfigError (nothing
    written) unless ``allow_mixed_protocol``, which writes them with a warning."""
    root = R.resolve_root(root)
    out_dir = R.bench_dir(root, check_name(name))
    ds = grid.dataset
    protocol = check_protocols(root, ds, grid.combinations, allow_mixed=allow_mixed_protocol)
    rows, missing = C.collect_rows(root, ds, grid.combinations)
    names = C.label_names(root, ds)
    summary = C.summarise(rows)
    stats = C.significance(root, ds, grid.combinations) if rows else []
    eff = C.efficiency(root, ds, grid.combinations, repeats=efficiency_repeats, progress=progress) \
        if efficiency and rows else []
    notes = [f"invalid pair {i['network']} + {i['module']}: {i['reason']}" for i in grid.invalid]
    notes += [f"failed {f['combination'].label}: {_first_line(f['error'])}" for f in grid.failed]
    failed = {f["combination"].label for f in grid.failed}
    notes += [f"not finished: {m}" for m in missing if m not in failed]
    config = grid.combinations[0].config
    folds = ", ".join(dict.fromkeys(str(c.fold) for c in grid.combinations))
    seeds = ", ".join(dict.fromkeys(str(c.seed) for c in grid.combinations))
    intro = [f"Dataset {ds}, configuration {config}, folds {folds}, seeds {seeds}.",
             f"{len(grid.trained)} combination(s) trained in this run ({grid.seconds:.0f} s), "
             f"{len(grid.skipped)} already finished, {len(grid.failed)} failed, {len(grid.invalid)} invalid pair(s)."]
    intro += protocol_lines(protocol)
    tables = build_tables(summary, stats, eff, names)
    title = f"salseg benchmark: {name}"
    figures: dict = {}
    if summary:
        figures["bar"] = bar_chart(summary)
        done = [c for c in grid.combinations if c.label not in set(missing)]
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
    _write_text(files["report_html"], report_html(title, intro, tables, figures, notes))
    write_json(files["bench_json"], {"name": name, "dataset": ds, "grid": grid.to_dict(), "rows": rows,
                                     "summary": summary, "stats": stats, "efficiency": eff,
                                     "protocol": {**protocol, "allow_mixed": allow_mixed_protocol}})
    log.info("benchmark %s written to %s", name, out_dir)
    return {"bench_dir": out_dir, "files": files, "table_md": md, "tables": tables, "rows": rows,
            "summary": summary, "stats": stats, "efficiency": eff, "notes": notes, "protocol": protocol}
