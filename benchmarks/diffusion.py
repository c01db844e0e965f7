"""Diffusion segmenters: Dice and seconds per case against the number of DDIM sampling steps.

    /work/venv/bin/python benchmarks/diffusion.py --root ROOT [--dataset GlaS] [--networks medsegdiff ldseg]
        [--steps 5 15 50] [--fold 0] [--ensemble 1] [--device cpu|cuda|auto] [--threads 1] [--seed 0]
        [--checkpoint final] [--json out.json]

Needs a planned, preprocessed dataset with trained folds (``salseg train GlaS -n medsegdiff -f 0`` ...); the GlaS
demo data converts with ``salseg convert glas ../shared/data/glas`` (or ``salseg.convert.glas.convert_glas``).
For each network and each S it predicts the fold's validation cases on the preprocessed grid (sliding window,
no mirroring, ``--ensemble`` DDIM samples of S steps, fixed seed) and reports the foreground Dice against the
preprocessed reference (mean over cases; per foreground class averaged) and the median wall-clock seconds per case.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from salseg import results as R
from salseg.fileio import read_json
from salseg.infer.predictor import DiffusionOptions, Predictor
from salseg.infer.results_loading import resolve_result_dataset
from salseg.train.data import load_case


def dice_fg(pred: np.ndarray, ref: np.ndarray, num_classes: int) -> float:
    ref = np.where(ref < 0, 0, ref)
    scores = []
    for c in range(1, num_classes):
        p, r = pred == c, ref == c
        denom = np.count_nonzero(p) + np.count_nonzero(r)
        scores.append(1.0 if denom == 0 else 2.0 * np.count_nonzero(p & r) / denom)
    return float(np.mean(scores))


def bench_network(root: Path, dataset: str, network: str, config: str, fold: int, steps: list[int], ensemble: int,
                  device: str, seed: int, checkpoint: str) -> list[dict]:
    predictor = Predictor.from_results(root, dataset, network, "none", config, folds=[fold], checkpoint=checkpoint,
                                       device=device)
    splits = read_json(R.splits_file(root, dataset))
    cases = splits[fold]["val"]
    folder = R.config_dir(root, dataset, predictor.plans["configurations"][config].get("data_identifier", config))
    loaded = [load_case(folder, c) for c in cases]
    rows = []
    for s in steps:
        dices, times = [], []
        for case in loaded:
            opts = DiffusionOptions(steps=s, sampler="ddim", ensemble=ensemble, seed=seed)
            if predictor.device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            probs, _ = predictor.predict_preprocessed_case(case.data, mirroring=False, diffusion=opts)
            if predictor.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            dices.append(dice_fg(np.asarray(probs).argmax(0), case.seg, predictor.num_classes))
        rows.append({"network": network, "steps": s, "ensemble": ensemble, "cases": len(loaded),
                     "dice": float(np.mean(dices)), "seconds_per_case": statistics.median(times)})
        print(f"{network:12s} steps {s:4d}  ensemble {ensemble}  Dice {rows[-1]['dice']:.4f}  "
              f"{rows[-1]['seconds_per_case']:.2f} s/case  ({len(loaded)} cases)", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True)
    ap.add_argument("--dataset", default="GlaS")
    ap.add_argument("--config", default="2d")
    ap.add_argument("--networks", nargs="+", default=["medsegdiff", "ldseg"])
    ap.add_argument("--steps", nargs="+", type=int, default=[5, 15, 50])
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--ensemble", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", default="final")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = R.resolve_root(args.root)
    rows = []
    try:
        dataset = resolve_result_dataset(root, args.dataset)
        for net in args.networks:
            rows += bench_network(root, dataset, net, args.config, args.fold, args.steps, args.ensemble,
                                  args.device, args.seed, args.checkpoint)
    except Exception as e:  # a benchmark script: one clear line, not a traceback
        sys.exit(f"benchmark failed: {e}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
