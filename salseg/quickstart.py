"""The whole chain on the embedded synthetic dataset, sized for a CPU: synth -> plan -> preprocess -> train
(unet + LSTM-SA, 2.5d) -> predict the held-out fold -> evaluate. ``salseg quickstart`` is a thin call into this."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from salseg import results as R
from salseg.parallel import threads_for_busy_machine

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]

NETWORK, MODULE, CONFIG = "unet", "lstmsa", "2.5d"
# CPU-sized training for a few minutes on 2 cores: small patches, a narrow ConvLSTM head (the full-resolution
# 64-channel head alone costs ~40 GFLOP per slice at 160x160) and Adam, which converges far faster than the
# SGD recipe over a few hundred iterations) at the CPU recipe's rate 3e-3: a busy machine fits ~125 iterations in
# the budget, after which lr 1e-3 had learnt no foreground (Dice 0.00) and 3e-3 reached 0.38 (1e-2: 0.57; fixed 5
# epochs of 25, docs/quickstart.md); epochs are cut to the time budget.
QUICK_TRAINING = dict(epochs=1000, iters_per_epoch=25, batch_size=4, patch_size=(96, 96), val_every=5,
                      optimizer="adam", lr=3e-3, width=16, options={"features": 8})


def quick_settings(dataset: str, *, minutes: float, seed: int = 0, device: str = "auto"):
    """The quickstart's training run (salseg.train.settings): fold 0, the budget ``minutes``."""
    from salseg.train import TrainSettings

    return TrainSettings(dataset, NETWORK, MODULE, config=CONFIG, fold=0, device=device, seed=seed,
                         time_budget=minutes * 60.0, **QUICK_TRAINING)


@dataclass
class QuickstartResult:
    root: Path
    dataset: str
    fold_dir: Path
    predictions: Path
    summary_file: Path
    summary: dict
    seconds: dict = field(default_factory=dict)


def run_quickstart(root=None, *, minutes: float = 5.0, cases: int = 20, seed: int = 0, device: str = "auto",
                   workers: int = 2, progress: Progress | None = None) -> QuickstartResult:
    """Run the chain; ``minutes`` is the training budget (the whole run takes about twice that on 2 CPU cores)."""
    from salseg.evaluate import evaluate_folders
    from salseg.fileio import read_json
    from salseg.infer.predictor import Predictor
    from salseg.plan import plan_dataset
    from salseg.preprocess import preprocess_dataset
    from salseg.synthetic import generate_synthetic
    from salseg.train import train

    root = R.resolve_root(root)
    seconds: dict[str, float] = {}

    def timed(name, fn, *args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        seconds[name] = round(time.perf_counter() - t0, 1)
        return out

    raw = timed("synth", generate_synthetic, root, cases=cases, seed=seed, progress=progress, overwrite=True)
    ds = raw.name
    timed("plan", plan_dataset, root, ds, configs=[CONFIG], seed=seed, num_workers=workers, progress=progress)
    timed("preprocess", preprocess_dataset, root, ds, configs=[CONFIG], num_workers=workers, force=True,
          progress=progress)
    fold_dir = timed("train", train, root, quick_settings(ds, minutes=minutes, seed=seed, device=device),
                     progress=progress, overwrite=True)  # a re-run replaces its own demo run

    # predict the held-out fold from its RAW images, as a user would predict new scans
    val_cases = read_json(R.splits_file(root, ds))[0]["val"]
    info_ending = read_json(raw / "dataset.json")["file_ending"]
    inputs = [[raw / "imagesTr" / f"{c}_0000{info_ending}"] for c in val_cases]
    pred_dir = root / "quickstart" / "predictions"
    predictor = Predictor.from_results(root, ds, NETWORK, MODULE, CONFIG, folds=[fold_dir.name[len("fold_"):]],
                                       checkpoint="final", device=device)  # fold 0 of this seed
    # a busy machine: the mirror axes the time budget chose for the closing validation (the same cases), and no
    # more torch threads than the other processes leave free (the prediction's own thread trials then have one
    # candidate: at a load of 4 its trials with 2 threads took predict from 43 s to 118 s)
    closing = read_json(fold_dir / R.CONFIG_JSON).get("closing_validation") or {}
    mirroring = tuple(closing["mirror_axes"]) if "mirror_axes" in closing else True
    if mirroring is not True:
        log.info("predicting with %s, as the time budget chose for the closing validation",
                 f"mirroring on axes {' '.join(map(str, mirroring))}" if mirroring else "no mirroring")
    busy = threads_for_busy_machine("the prediction") if predictor.device.type == "cpu" else contextlib.nullcontext()
    with busy:
        timed("predict", predictor.predict_files, inputs, pred_dir, progress=progress, overwrite=True,
              mirroring=mirroring)  # overwrite: a re-run
    summary_file = pred_dir / R.SUMMARY_JSON
    summary = timed("evaluate", evaluate_folders, pred_dir, raw / "labelsTr", output=summary_file,
                    num_workers=1, progress=progress, cases=val_cases)
    return QuickstartResult(root, ds, fold_dir, pred_dir, summary_file, summary, seconds)
