"""What a run leaves besides checkpoints: ``log.jsonl`` upkeep, ``progress.png`` and the final validation export
(predictions in the original geometry + ``summary.json`` against the raw labels)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Sequence

import torch

from salseg import results as R
from salseg.fileio import atomic_path, write_json

log = logging.getLogger(__name__)


def read_log(path: Path) -> list[dict]:
    """Records of log.jsonl; a torn last line (a run killed mid-write) is dropped."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return out


def rewrite_log(path: Path, keep_until: int) -> list[dict]:
    """Keep the records of epochs <= ``keep_until`` (those the checkpoint being resumed covers), atomically."""
    records = [r for r in read_log(path) if int(r.get("epoch", 0)) <= keep_until] if keep_until > 0 else []
    with atomic_path(path, ".jsonl") as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def write_progress_png(path: Path, records: Sequence[dict], title: str = "", names: dict | None = None) -> None:
    """Loss, the in-training Dice estimate (mean foreground and per class) and learning rate over epochs;
    ``title``: what was trained (:func:`progress_title`); ``names``: {output key: label name} for the legend."""
    import matplotlib.pyplot as plt

    fig = progress_figure(records, title, names)
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)


def progress_title(cfg) -> str:
    """progress.png's title: dataset, network, module, configuration, fold (and seed) of the run config."""
    module = "" if cfg.module in (None, "", "none") else f" + {cfg.module}"
    seed = f", seed {cfg.seed}" if cfg.seed else ""
    return f"{cfg.dataset}: {cfg.network}{module} ({cfg.config}), fold {cfg.fold}{seed}"


def progress_figure(records: Sequence[dict], title: str = "", names: dict | None = None):
    """The figure of progress.png. Epoch ticks are whole numbers; legends sit to the right of the plots, so they
    never cover a point; a label's legend entry is its name from dataset.json (``names``), its value otherwise."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in records]
    names = names or {}
    style = "-o" if len(records) < 20 else "-"  # a line of one point draws nothing: mark the points
    fig, axes = plt.subplots(3, 1, figsize=(9.5, 9), sharex=True)
    axes[0].plot(epochs, [r["train_loss"] for r in records], "b" + style, ms=3,
                 label="train loss")
    axes[0].set_ylabel("loss")
    val = [r for r in records if r.get("val_dice") is not None]
    if val:
        ve = [r["epoch"] for r in val]
        axes[1].plot(ve, [r.get("mean_fg_dice") if r.get("mean_fg_dice") is not None else float("nan")
                          for r in val], "k-o", label="mean foreground")
        for label in val[-1]["val_dice"]:
            ys = [r["val_dice"].get(label) for r in val]
            axes[1].plot(ve, [float("nan") if y is None else y for y in ys], "--.", label=_legend_name(label, names))
    axes[1].set_ylabel(f"{IN_TRAINING}\n(validation cases,\nno mirroring)", fontsize="small")
    axes[1].set_ylim(0, 1)
    axes[2].plot(epochs, [r.get("lr", float("nan")) for r in records], "g" + style, ms=3, label="learning rate")
    axes[2].set_ylabel("learning rate")
    axes[2].set_xlabel("epoch")
    axes[2].xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if epochs:
        axes[2].set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        if max(epochs) - min(epochs) < 10:  # a short run: every epoch (the locator would fill in fractions)
            axes[2].set_xticks(range(min(epochs), max(epochs) + 1))
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", borderaxespad=0)
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    return fig


def _legend_name(key: str, names: dict) -> str:
    name = names.get(str(key))
    return f"{name} ({key})" if name and name != str(key) else f"label {key}"


IN_TRAINING = "in-training Dice estimate"
FINAL = "final validation"


def validation_protocols(cfg, n_cases: int, diffusion: bool = False) -> dict:
    """How the in-training estimate and the final validation are computed: the same validation cases, different
    steps (log lines, config.json's readers and progress.png use these words)."""
    after_last = ("but not after the last (under a time budget the final validation scores the last epoch)"
                  if cfg.time_budget else "and after the last")
    return {
        IN_TRAINING: f"{n_cases} validation case(s) of fold {cfg.fold}, every {cfg.val_every} epoch(s) "
                     f"{after_last}; whole cases by sliding window without mirroring, scored in the preprocessed "
                     f"geometry (Dice per class, mean over cases)",
        FINAL: f"the same {n_cases} case(s) once after the last epoch with the final weights; sliding window "
               f"{'(diffusion: validation sampling) ' if diffusion else 'with mirroring '}exported to the original "
               f"geometry and scored against the raw labels (validation/summary.json)",
    }


def export_validation(model: torch.nn.Module, cfg, root: Path, folder: Path, case_ids: Sequence[str], out_dir: Path,
                      device: torch.device, progress: Callable[[str, int, int], None] | None = None,
                      sampling=None, save_probabilities: bool = False, mirror_axes=None) -> dict:
    """The final validation: predict the validation cases (sliding window, mirroring unless ``sampling`` holds a
    diffusion model's sampling options), write them in the original geometry to ``out_dir`` and evaluate them
    against their raw labels into ``out_dir/summary.json``. ``save_probabilities``: also ``<case>.npz`` (softmax on
    the original grid) + ``<case>.json`` (its geometry) per case, as ``predict --save-probabilities``.
    ``mirror_axes``: mirror on these axes only (a time budget's choice; None: every axis). ``progress`` also
    follows the sliding windows of each case ("final validation windows")."""
    from salseg.evaluate import evaluate_folders
    from salseg.infer.export import export_prediction
    from salseg.infer.predictor import predict_preprocessed
    from salseg.train.data import load_case

    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    for i, cid in enumerate(case_ids):
        case = load_case(folder, cid, need_seg=False)
        probs = predict_preprocessed(model, case.data, cfg.configuration, num_classes=cfg.num_classes, step=0.5,
                                     mirroring=(sampling is None) if mirror_axes is None else
                                     (tuple(mirror_axes) if sampling is None else False),
                                     device=device, diffusion=sampling, regions=cfg.labels.has_regions,
                                     progress=None if progress is None else
                                     (lambda _d, done, total: progress("final validation windows", done, total)))
        export_prediction(probs, case.properties, cfg.label_values, out_dir / f"{cid}{cfg.file_ending}",
                          spec=cfg.labels, save_probabilities=save_probabilities)
        if progress:
            progress("final validation", i + 1, len(case_ids))
    ref_dir = R.raw_dir(root, cfg.dataset) / "labelsTr"
    summary = evaluate_folders(out_dir, ref_dir, labels=[v for v in cfg.label_values if v != 0],
                               output=out_dir / R.SUMMARY_JSON, cases=list(case_ids))
    if getattr(cfg, "run_id", ""):  # the validation belongs to this run (salseg.run.identity.finished_run)
        summary["run_id"] = cfg.run_id
        write_json(out_dir / R.SUMMARY_JSON, summary)
    fg = summary.get("foreground_mean", {}).get("Dice")
    if sampling is not None:
        how = "validation sampling"
    elif mirror_axes is None:
        how = "mirroring"
    else:  # what a time budget chose: said as it was run
        how = f"mirroring on axes {' '.join(map(str, mirror_axes))}" if len(mirror_axes) else "no mirroring"
    log.info("%s (%d validation cases, %s, original geometry): mean foreground Dice %s", FINAL, len(case_ids),
             how, "n/a" if fg is None else f"{fg:.4f}")
    return summary
