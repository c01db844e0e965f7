"""Figures of a statistics report (matplotlib, Agg backend, PNG):

- ``forest.png``: every paired difference (method − reference) with its t-interval and its bootstrap interval
  drawn on the point's row, one panel per metric (its own axis and unit), one row per comparison, coloured by
  verdict, a line at 0;
- ``significance_<metric>_<label>.png`` (3+ methods): methods × methods, cell (row i, column j) = Holm-corrected
  one-sided Wilcoxon p that i is better than j, significant cells marked;
- ``ranks_<metric>_<label>.png`` (3+ methods): the rank distribution (blob plot), circle area ∝ P(rank = k),
  the full-data rank marked, Kendall's tau in the title.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from salseg.fileio import atomic_path

COLOURS = {"better": "#1a9850", "worse": "#d73027", "not separable": "#555555"}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _plt()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _slug(*parts) -> str:
    return "_".join(re.sub(r"[^A-Za-z0-9._-]+", "-", str(p)).strip("-") for p in parts if p not in (None, ""))


def _ok(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def _unit(metric: str) -> str:
    """The unit of a metric's differences on the forest plot's axis (distances in mm, the rest unitless)."""
    m = metric.lower()
    return " (mm)" if m.startswith(("hd", "assd", "masd", "asd")) or "distance" in m else ""


def forest(records: list[dict], path: Path) -> Path:
    """One panel per metric (its own x axis and unit, a line at 0); per comparison the point and both intervals on
    one row, so they stay together however few rows there are."""
    plt = _plt()
    metrics = list(dict.fromkeys(r["metric"] for r in records))
    rows = [[r for r in records if r["metric"] == m] for m in metrics]
    fig, axes = plt.subplots(len(metrics), 1, squeeze=False,
                             figsize=(8, 0.9 + sum(0.9 + 0.4 * len(rs) for rs in rows)),
                             gridspec_kw={"height_ratios": [1 + len(rs) for rs in rows]})
    for ax, metric, rs in zip(axes[:, 0], metrics, rows):
        n = len(rs)
        y = np.arange(n)[::-1]
        for yi, r in zip(y, rs):
            c = COLOURS.get(r["verdict"], "#555555")
            if _ok(r["boot_ci_low"]):
                ax.plot([r["boot_ci_low"], r["boot_ci_high"]], [yi] * 2, color=c, lw=5, alpha=0.45,
                        solid_capstyle="butt")
            if _ok(r["ci_low"]):
                ax.plot([r["ci_low"], r["ci_high"]], [yi] * 2, color=c, lw=1.4, marker="|", ms=10)
            if _ok(r["mean_diff"]):
                ax.plot([r["mean_diff"]], [yi], "o", color=c, ms=7, zorder=3)
        ax.axvline(0, color="k", lw=0.8, ls="--")
        ax.set_yticks(y)
        ax.set_yticklabels([f"{r['method']} vs {r['reference']}" + _label_part(r) for r in rs], fontsize=8)
        ax.set_ylim(-0.6, n - 0.4)
        ax.set_title(f"{metric}: mean difference{_unit(metric)}, method − reference", fontsize=9)
    axes[-1, 0].set_xlabel("thin with ticks: t-interval; wide band: BCa bootstrap (95 %); dot: mean difference",
                           fontsize=8)
    handles = [plt.Line2D([], [], color=c, marker="o", lw=3, label=v) for v, c in COLOURS.items()]
    axes[0, 0].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0)
    fig.suptitle("Paired differences", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _label_part(r: dict) -> str:
    """A row's label: its name where the report has one (``label_name``), else its value."""
    if r.get("label") in (None, "all"):
        return ""
    name = r.get("label_name")
    return f" [{name}]" if name and str(name) != str(r["label"]) else f" [label {r['label']}]"


def significance(rank: dict, path: Path, alpha: float = 0.05) -> Path:
    plt = _plt()
    methods = rank["methods"]
    m = len(methods)
    p = np.array([[np.nan if v is None else v for v in row] for row in rank["significance"]["p_corrected"]],
                 dtype=float)
    fig, ax = plt.subplots(figsize=(1.6 + 0.7 * m, 1.2 + 0.6 * m))
    shown = np.where(np.isnan(p), 1.0, p)
    im = ax.imshow(-np.log10(np.clip(shown, 1e-6, 1)), cmap="Greens", vmin=0, vmax=max(3, -math.log10(alpha) + 1))
    for i in range(m):
        for j in range(m):
            if i == j:
                ax.text(j, i, "—", ha="center", va="center", color="#999999")
                continue
            txt = "n/a" if np.isnan(p[i, j]) else f"{p[i, j]:.2g}"
            star = "*" if not np.isnan(p[i, j]) and p[i, j] < alpha else ""
            ax.text(j, i, txt + star, ha="center", va="center", fontsize=8,
                    color="white" if star else "black")
    ax.set_xticks(range(m))
    ax.set_xticklabels(methods, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(m))
    ax.set_yticklabels(methods, fontsize=8)
    ax.set_xlabel("… than this method")
    ax.set_ylabel("this method is better …")
    fig.colorbar(im, ax=ax, label="−log10 p (Holm)")
    lab = "" if rank.get("label") in (None, "all") else f", label {rank['label']}"
    ax.set_title(f"One-sided Wilcoxon, Holm ({rank['metric']}{lab}); * p < {alpha:g}", fontsize=9)
    return _save(fig, path)


def rank_blobs(rank: dict, path: Path) -> Path:
    plt = _plt()
    methods = rank["methods"]
    m = len(methods)
    probs = np.asarray(rank["rank_probabilities"])
    fig, ax = plt.subplots(figsize=(1.8 + 0.8 * m, 3.2))
    for i in range(m):
        for k in range(m):
            if probs[i, k] > 0:
                ax.scatter(i, k + 1, s=1200 * probs[i, k], color="#4575b4", alpha=0.7)
                if probs[i, k] >= 0.1:
                    ax.text(i + 0.28, k + 1, f"{probs[i, k]:.2f}", va="center", fontsize=7)
        ax.scatter(i, rank["rank"][i], marker="x", color="k", s=40, zorder=3)
    ax.set_xticks(range(m))
    ax.set_xticklabels(methods, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(1, m + 1))
    ax.set_ylim(m + 0.6, 0.4)
    ax.set_ylabel("rank (1 = best)")
    ax.set_xlim(-0.6, m - 0.2)
    lab = "" if rank.get("label") in (None, "all") else f", label {rank['label']}"
    ax.set_title(f"Bootstrap ranks ({rank['metric']}{lab}, {rank['n_boot']} resamples of {rank['n_cases']} cases)\n"
                 f"Kendall's τ vs full data: median {rank['kendall_tau_median']:.2f}, 5th pct "
                 f"{rank['kendall_tau_p05']:.2f}; × = full-data rank", fontsize=8)
    return _save(fig, path)


def write_plots(report: dict, folder, alpha: float = 0.05) -> list[Path]:
    """Every figure of a report into ``folder``; returns the paths written."""
    folder = Path(folder)
    out = []
    if report["records"]:
        out.append(forest(report["records"], folder / "forest.png"))
    for r in report.get("ranking") or []:
        tag = _slug(r.get("dataset"), r["metric"], r.get("label"))
        out.append(significance(r, folder / f"significance_{tag}.png", alpha))
        out.append(rank_blobs(r, folder / f"ranks_{tag}.png"))
    return out
