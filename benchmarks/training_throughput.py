"""Where training time goes: the loader alone, the model alone, and both together (nnU-Net's loader beside them).

    PYTHONPATH=$PWD /work/main/.venv/bin/python benchmarks/training_throughput.py DATASET --config C
        [--network unet --module none] [--workers W] [--batches 20] [--steps 5] [--device auto]
        [--patch-size ...] [--batch-size B] [--root ROOT] [--nnunet-python /work/nnunet_venv/bin/python]

The dataset must be planned and preprocessed (salseg plan / preprocess). Patch and batch size are the plans' (what
the loader has to sustain on the GPU the plans were made for) unless given; the network is built as ``salseg train``
builds it on this device (CPU defaults such as the unet width apply on a CPU). Lines printed:
- ``loader`` (in-process): sampling (the enlarged initial crop) + augmentation batches/s, one core;
- ``loader`` with ``--workers`` W background processes (one DataLoader for the run, as the trainer uses it);
- ``batched augmentation``: ``--augment-device`` (cuda when available, else cpu): workers sample patches, the whole
  batch is augmented with torch in the main process;
- ``nnU-Net loader``: nnU-Net v2's ``nnUNetDataLoader`` + its training transforms (batchgeneratorsv2, enlarged
  initial patch, its rotation rule, deep-supervision targets) on the same preprocessed arrays, patch and batch, one
  process (``--nnunet-python``; skipped with a message when absent), as a ratio to salseg's in-process loader;
- ``model alone``: train steps/s on one synthetic in-memory batch (forward, backward, optimizer; AMP on CUDA);
- ``real``: train steps/s with the loader feeding the model (``--workers`` W).
The smaller of loader and model bounds the real rate; on a shared CPU all numbers move with the load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

NNUNET_PYTHON = "/work/nnunet_venv/bin/python"

NNUNET_SCRIPT = r"""
import json, sys, time
import numpy as np
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.label_handling.label_handling import LabelManager
cfg = json.load(open(sys.argv[1]))

class Mem:  # nnU-Net's dataset interface over salseg's preprocessed arrays
    def __init__(self, folder, ids):
        self.identifiers, self.cases = list(ids), {}
        for c in ids:
            z = np.load(f"{folder}/{c}.npz")
            props = json.load(open(f"{folder}/{c}.json"))
            locs = {int(k): np.concatenate([np.zeros((len(v), 1), int), np.asarray(v, int).reshape(-1, 3)], 1)
                    for k, v in (props.get("class_locations") or {}).items()}
            self.cases[c] = (z["data"].astype(np.float32), z["seg"][None].astype(np.int16), {"class_locations": locs})
    def load_case(self, c):
        d, s, p = self.cases[c]
        return d, s, None, p

patch = cfg["patch"]
dim = len(patch)
if dim == 2:
    rot = (-15 / 180 * np.pi, 15 / 180 * np.pi) if max(patch) / min(patch) > 1.5 else (-np.pi, np.pi)
    dummy2d, mirror = False, (0, 1)
else:
    dummy2d = max(patch) / patch[0] > 3
    rot = (-np.pi, np.pi) if dummy2d else (-30 / 180 * np.pi, 30 / 180 * np.pi)
    mirror = (0, 1, 2)
initial = get_patch_size(patch, rot, rot, rot, (0.85, 1.25))
if dummy2d:
    initial[0] = patch[0]
ds_scales = list(list(i) for i in 1 / np.cumprod(np.vstack(cfg["pools"]), axis=0))[:-1] if cfg["pools"] else None
lm = LabelManager(cfg["labels"], None)
tr = nnUNetTrainer.get_training_transforms(patch, rot, ds_scales, mirror, dummy2d, use_mask_for_norm=[False],
                                           foreground_labels=lm.foreground_labels)
dl = nnUNetDataLoader(Mem(cfg["folder"], cfg["cases"]), cfg["batch"], initial, patch, lm,
                      oversample_foreground_percent=0.33, transforms=tr)
np.random.seed(0)
next(dl)
t0 = time.perf_counter()
for _ in range(cfg["batches"]):
    next(dl)
rate = cfg["batches"] / (time.perf_counter() - t0)
print(json.dumps({"batches_per_s": rate, "initial_patch": list(map(int, initial))}))
"""


def _rate(n: int, fn) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - t0)


def loader_rate(sampler, transforms, batches: int, workers: int, augmenter=None) -> float:
    """Batches/s of one run loader (first batch excluded: worker start-up)."""
    from salseg.train.augment import run_batches

    with run_batches(sampler, transforms, batches + 1, [0, 0], [0], workers, augmenter=augmenter) as stream:
        it = stream.epoch(0)
        next(it)
        t0 = time.perf_counter()
        for batch in it:
            if augmenter is not None and augmenter.device.type == "cuda":
                torch.cuda.synchronize()
        return batches / (time.perf_counter() - t0)


def make_step(cfg, model, dev):
    from salseg.train.losses import DeepSupervisionLoss, DiceCELoss
    from salseg.train.trainer import TrainStep, make_optimizer

    step_module = TrainStep(model, DeepSupervisionLoss(DiceCELoss())).to(dev)
    opt = make_optimizer(cfg, model.parameters())
    cuda = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, enabled=cuda):
            loss = step_module(x, y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if cuda:
            torch.cuda.synchronize()
        return loss

    return step


def nnunet_rate(python: str, folder: Path, cases, patch, batch, pools, labels, batches: int) -> str | dict:
    if not Path(python).is_file():
        return f"nnU-Net venv not found ({python}): skipped"
    import tempfile

    with tempfile.TemporaryDirectory() as td:
        cfg = Path(td) / "cfg.json"
        cfg.write_text(json.dumps({"folder": str(folder), "cases": list(cases), "patch": list(patch), "batch": batch,
                                   "pools": pools, "labels": labels, "batches": batches}))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "nnUNet_raw": td, "nnUNet_preprocessed": td,
               "nnUNet_results": td}
        env.pop("PYTHONPATH", None)
        r = subprocess.run([python, "-c", NNUNET_SCRIPT, str(cfg)], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        return "nnU-Net loader failed: " + (r.stderr.strip().splitlines() or ["?"])[-1]
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset")
    ap.add_argument("--config", default="2d")
    ap.add_argument("--network", default="unet")
    ap.add_argument("--module", default="none")
    ap.add_argument("--workers", type=int, default=max(1, len(os.sched_getaffinity(0)) - 1))
    ap.add_argument("--batches", type=int, default=20, help="loader batches per measurement")
    ap.add_argument("--steps", type=int, default=5, help="train steps per measurement")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--patch-size", type=int, nargs="+")
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--root", default=os.environ.get("SALSEG_ROOT", "salseg_data"))
    ap.add_argument("--nnunet-python", default=NNUNET_PYTHON)
    args = ap.parse_args()

    from salseg import results as R
    from salseg.fileio import read_json
    from salseg.train.augment import training_pipeline
    from salseg.plan.splits import fold_cases
    from salseg.run.model import build_model
    from salseg.train import TrainSettings
    from salseg.plans import read_plans
    from salseg.train.data import load_cases
    from salseg.train.gpu_augment import make_augmenter
    from salseg.train.resolve import finish_model_config, make_run_config
    from salseg.train.trainer import resolve_device

    torch.set_num_threads(1)
    root = R.resolve_root(args.root)
    dev = resolve_device(args.device)
    from salseg.dataset import resolve_dataset
    ds = resolve_dataset(root, args.dataset)
    plans = read_plans(R.plans_file(root, ds))
    conf = plans.configuration(args.config).to_dict()
    patch = list(args.patch_size or conf["patch_size"])
    batch = int(args.batch_size or conf["batch_size"])
    cfg = make_run_config(root, TrainSettings(ds, args.network, args.module, args.config, 0, patch_size=patch,
                                              batch_size=batch), dev, 1)
    model = build_model(cfg)
    cfg = finish_model_config(cfg, model)
    model = model.to(dev)
    train_ids, _ = fold_cases(root, ds, 0)
    folder = R.config_dir(root, ds, cfg.data_identifier)
    sampler, transforms = training_pipeline(load_cases(folder, train_ids), cfg)  # as the trainer: enlarged crop
    aug_dev = "cuda" if dev.type == "cuda" else "cpu"
    ncpu = len(os.sched_getaffinity(0))
    crop = getattr(sampler, "crop", None) or cfg.patch_size
    print(f"{ds} {args.config}: {args.network}+{args.module}, patch {cfg.patch_size} (crop {list(crop)}), "
          f"batch {cfg.batch_size}, "
          f"{len(train_ids)} training cases, device {dev}, {ncpu} cores visible (shared machines: numbers move "
          f"with the load)")
    def show(name, v, unit):  # each line as soon as it is measured (the 3d lines take minutes on a CPU)
        print(f"  {name:44s} {v:8.2f} {unit}", flush=True)

    base = loader_rate(sampler, transforms, args.batches, 0)
    show("loader, in-process (1 core)", base, "batches/s")
    if args.workers > 0:
        show(f"loader, {args.workers} worker(s)", loader_rate(sampler, transforms, args.batches, args.workers),
             "batches/s")
    aug = make_augmenter(transforms, cfg.patch_size, cfg.dim, aug_dev, 0)
    show(f"batched augmentation on {aug_dev}, {args.workers} worker(s)",
         loader_rate(sampler, transforms, args.batches, args.workers, aug), "batches/s")
    nn = nnunet_rate(args.nnunet_python, folder, train_ids, cfg.patch_size, cfg.batch_size,
                     conf.get("pool_op_kernel_sizes"), plans.labels, max(5, args.batches // 2))
    x = torch.randn(cfg.batch_size, *([cfg.neighbours] if cfg.mode == "2.5d" else []), cfg.in_channels,
                    *cfg.patch_size, device=dev)
    y = torch.randint(0, cfg.num_classes, (cfg.batch_size, 1, *cfg.patch_size), device=dev)
    step = make_step(cfg, model, dev)
    step(x, y)
    show("model alone (synthetic batch)", _rate(args.steps, lambda: step(x, y)), "steps/s")
    from salseg.train.augment import run_batches
    with run_batches(sampler, transforms, args.steps + 1, [0, 0], [0], args.workers, pin_memory=dev.type == "cuda") \
            as stream:
        it = stream.epoch(0)
        b = next(it)
        step(b["data"].to(dev), b["target"].to(dev))
        t0 = time.perf_counter()
        for b in it:
            step(b["data"].to(dev, non_blocking=True), b["target"].to(dev, non_blocking=True))
        show(f"real: loader ({args.workers} worker(s)) + model", args.steps / (time.perf_counter() - t0), "steps/s")
    if isinstance(nn, str):
        print(f"  {nn}")
    else:
        r = nn["batches_per_s"]
        print(f"  {'nnU-Net loader, 1 process':44s} {r:8.2f} batches/s   salseg in-process / nnU-Net = "
              f"{base / r:.2f}x  (nnU-Net initial patch {nn['initial_patch']}, deep-supervision targets)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
