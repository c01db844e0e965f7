"""``bench/<name>/``: ``results.csv``, ``table.md``, ``report.html`` (self-contained) and ``bench.json``.

The HTML report (:mod:`salseg.bench.report_html`) embeds everything: inline CSS, and PNG figures (matplotlib, Agg)
as base64 ``data:`` URIs -- verdicts first, then the per-case paired plot, the tables, rankings, efficiency,
robustness, training (times from each fold's log.jsonl, curves of every fold with 2+ validation points) and a few
prediction overlays (image slice, reference and prediction contours, a colour key, empty predictions marked).
``stats.md`` / ``stats.tex`` hold the comparisons as paper tables and ``plots/`` the ranking figures.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from salseg import results as R
from salseg.bench import collect as C
from salseg.bench import report_html as H
from salseg.bench.protocols import check_protocols, protocol_lines
from salseg.bench.tables import build_tables, tables_markdown
from salseg.errors import ConfigError
from salseg.fileio import atomic_path, write_json

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]
OVERLAYS = 4


# --------------------------------------------------------------------------------------------------- figures
_plt, _png = H._plt, H.png  # one matplotlib set-up and PNG encoder for the whole report


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
    grid_line = (f"{len(grid.trained)} combination(s) trained in this run ({grid.seconds:.0f} s), "
                 f"{len(grid.skipped)} already finished, {len(grid.failed)} failed, {len(grid.invalid)} invalid "
                 f"pair(s).")
    intro = [f"Dataset {ds}, configuration {config}, folds {folds}, seeds {seeds}.", grid_line]
    intro += protocol_lines(protocol)
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
    html_intro = [line for line in intro if line != grid_line]   # the grid line goes to the training section
    _write_text(files["report_html"], H.render(title, html_intro, tables, figures, notes, grid_line))
    write_json(files["bench_json"], {"name": name, "dataset": ds, "grid": grid.to_dict(), "rows": rows,
                                     "summary": summary, "stats": stats, "efficiency": eff,
                                     "protocol": {**protocol, "allow_mixed": allow_mixed_protocol}})
    if stats:  # paper-ready tables of the comparisons (as `salseg stats --md/--latex`)
        from salseg.stats.export import to_latex, to_markdown

        files["stats_md"], files["stats_tex"] = out_dir / "stats.md", out_dir / "stats.tex"
        _write_text(files["stats_md"], to_markdown(stats))
        _write_text(files["stats_tex"], to_latex(stats))
    log.info("benchmark %s written to %s", name, out_dir)
    return {"bench_dir": out_dir, "files": files, "table_md": md, "tables": tables, "rows": rows,
            "summary": summary, "stats": stats, "efficiency": eff, "notes": notes, "protocol": protocol}
