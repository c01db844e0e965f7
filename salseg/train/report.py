"""What a run leaves besides checkpoints: ``log.jsonl`` upkeep, ``progress.png`` and the final validation export
(predictions in the original geometry + ``summary.json`` against the raw labels)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Sequence

import torch

from salseg import results as R
from salseg.fileio import atomic_path

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


def write_progress_png(path: Path, records: Sequence[dict]) -> None:
    """Loss, mean foreground Dice (and per class) and learning rate over epochs."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in records]
    fig, axes = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    axes[0].plot(epochs, [r["train_loss"] for r in records], "b-", label="train loss")
    axes[0].set_ylabel("loss")
    axes[0].legend(loc="upper right")
    val = [r for r in records if r.get("val_dice") is not None]
    if val:
        ve = [r["epoch"] for r in val]
        axes[1].plot(ve, [r.get("mean_fg_dice") if r.get("mean_fg_dice") is not None else float("nan")
                          for r in val], "k-o", label="mean fg Dice")
        for label in val[-1]["val_dice"]:
            ys = [r["val_dice"].get(label) for r in val]
            axes[1].plot(ve, [float("nan") if y is None else y for y in ys], "--", label=f"label {label}")
        axes[1].legend(loc="lower right", fontsize="small")
    axes[1].set_ylabel("validation Dice")
    axes[1].set_ylim(0, 1)
    axes[2].plot(epochs, [r["lr"] for r in records], "g-")
    axes[2].set_ylabel("learning rate")
    axes[2].set_xlabel("epoch")
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def export_validation(model: torch.nn.Module, cfg, root: Path, folder: Path, case_ids: Sequence[str], out_dir: Path,
                      device: torch.device, progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Predict the validation cases (sliding window with mirroring), write them in the original geometry to
    ``out_dir`` and evaluate them against the raw labels into ``out_dir/summary.json``."""
    from salseg.evaluate import evaluate_folders
    from salseg.infer.export import export_prediction
    from salseg.infer.predictor import predict_preprocessed
    from salseg.train.data import load_case
    from salseg.train.trainer import validation_sampling

    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    for i, cid in enumerate(case_ids):
        case = load_case(folder, cid, need_seg=False)
        sampling = validation_sampling(model)
        probs = predict_preprocessed(model, case.data, cfg.plans, num_classes=cfg.num_classes, step=0.5,
                                     mirroring=sampling is None, device=device, diffusion=sampling)
        export_prediction(probs, case.properties, cfg.label_values, out_dir / f"{cid}{cfg.file_ending}")
        if progress:
            progress("validation export", i + 1, len(case_ids))
    ref_dir = R.raw_dir(root, cfg.dataset) / "labelsTr"
    summary = evaluate_folders(out_dir, ref_dir, labels=[v for v in cfg.label_values if v != 0],
                               output=out_dir / R.SUMMARY_JSON, cases=case_ids)
    fg = summary.get("foreground_mean", {}).get("Dice")
    log.info("validation (%d cases, original geometry): mean foreground Dice %s", len(case_ids),
             "n/a" if fg is None else f"{fg:.4f}")
    return summary
