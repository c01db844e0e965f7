"""Benchmark: which CPU recipe gives the best held-out Dice for a given amount of CPU time?

Each candidate recipe (optimizer, lr, warm-up, batch, patch, unet width) trains `unet` on fold 0 of the knee MRI
(../shared/data/knee, imported with `convert folder`, planned, preprocessed `2d`) and of the synthetic dataset, for
the SAME budget, then the held-out fold is predicted whole by sliding window and scored (mean foreground Dice).

Two ways to hold the budget equal:
- ``--clock cpu`` (default): each candidate's seconds per training iteration are measured first as CPU time of
  this process (one intra-op thread, ``--calibrate`` iterations after 2 untimed ones), and it then trains
  ``budget / seconds_per_iteration`` iterations. On a machine shared with other jobs this is what an idle core
  would give: wall-clock time depends on the load, the CPU time of one thread much less.
- ``--iterations N`` (with the CPU clock): the budget is N iterations of salseg's default recipe, each candidate
  getting as many iterations as cost the same CPU time (measured back to back, so a uniform slow-down by other
  jobs cancels): on a heavily loaded machine even one thread's CPU time stretches (shared caches and memory),
  the ratio of two candidates' costs much less.
- ``--clock wall``: ``salseg train --time-budget`` itself (what a user gets on this machine now).

The held-out Dice is the trainer's closing validation (whole cases, sliding window, no mirroring, preprocessed
grid); the mirrored export of the validation folder is skipped to save CPU time (``--export`` keeps it).

    python benchmarks/cpu_recipe.py [--minutes 2 | --iterations 500] [--datasets knee synth] [--recipes NAME ...]
                                    [--workdir DIR] [--clock cpu|wall] [--threads 1] [--json out.json]

``--list`` prints the candidates. The recipe that ``salseg.train.cpu_defaults.CPU_RECIPE`` names is the row
marked ``default``; it should be the winner.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KNEE = REPO.parent / "shared" / "data" / "knee"

# train() settings of each candidate; every setting not named is the CPU default of the trainer (which, for the
# row marked default, is the recipe itself)
BASE = dict(width=16, iters_per_epoch=25, patch_size=None, batch_size=4)
CANDIDATES = {
    "sgd-0.01": dict(optimizer="sgd", lr=0.01),                      # the CPU defaults before the recipe
    "sgd-0.05-warm": dict(optimizer="sgd", lr=0.05, warmup_epochs=2),
    "adam-1e-3": dict(optimizer="adam", lr=1e-3),
    "adam-1e-3-warm": dict(optimizer="adam", lr=1e-3, warmup_epochs=2),
    "adam-3e-3": dict(optimizer="adam", lr=3e-3),
    "adam-3e-3-warm": dict(optimizer="adam", lr=3e-3, warmup_epochs=2),
    "adamw-1e-3": dict(optimizer="adamw", lr=1e-3, weight_decay=1e-2),
    "adam-1e-3-b2": dict(optimizer="adam", lr=1e-3, batch_size=2),
    "adam-1e-3-b8": dict(optimizer="adam", lr=1e-3, batch_size=8),
    "adam-1e-3-p64": dict(optimizer="adam", lr=1e-3, patch_size=64),
    "adam-1e-3-w8": dict(optimizer="adam", lr=1e-3, width=8),
    "adam-1e-3-w24": dict(optimizer="adam", lr=1e-3, width=24),
    "default": {},                                                   # salseg's CPU recipe, nothing given
}
for _name, _c in CANDIDATES.items():  # a name without "-warm" trains without warm-up (else the recipe's would apply)
    if _name != "default":
        _c.setdefault("warmup_epochs", 0)


class _Stop(Exception):
    """Raised by the epoch hook after the last epoch's validation: skips the mirrored validation export."""


def _prepare(work: Path, which: str) -> tuple[Path, str]:
    from salseg.plan import plan_dataset
    from salseg.preprocess import preprocess_dataset

    root = work / which
    if which == "knee":
        from salseg.convert.folder import convert_folder

        if not KNEE.is_dir():
            raise SystemExit(f"knee data not found at {KNEE}")
        ds = convert_folder(KNEE / "Image", KNEE / "Label", root, name="Knee", label_suffix="_label",
                            overwrite=True).name
    else:
        from salseg.synthetic import generate_synthetic

        ds = generate_synthetic(root, cases=20, seed=0).name
    if not (root / "preprocessed" / ds / "2d").is_dir():
        plan_dataset(root, ds, configs=["2d"], seed=0)
        preprocess_dataset(root, ds, configs=["2d"], num_workers=1)
    return root, ds


def _settings(name: str, dim_patch: list[int]) -> dict:
    s = {**(BASE if name != "default" else {}), **CANDIDATES[name]}
    if s.get("patch_size") is None:
        s.pop("patch_size", None)
    elif isinstance(s["patch_size"], int):  # a cap per axis, as the CPU defaults apply it
        s["patch_size"] = [min(p, s["patch_size"]) for p in dim_patch]
    return s


_COST: dict = {}  # (dataset, batch, patch, width) -> measured CPU seconds per iteration


def _seconds_per_iteration(root: Path, ds: str, settings: dict, n: int) -> float:
    """CPU seconds of one training iteration (batch + augmentation + forward + backward + step), one thread.
    Candidates that differ only in optimizer, lr or warm-up cost the same: they share one measurement, so they
    train exactly the same number of iterations."""
    import numpy as np
    import torch

    from salseg import results as R
    from salseg.train.augment import build_transforms, epoch_batches
    from salseg.run.model import build_model
    from salseg.train.data import PatchSampler, load_cases
    from salseg.train.losses import DeepSupervisionLoss, DiceCELoss
    from salseg.plan.splits import fold_cases
    from salseg.train import TrainSettings
    from salseg.train.resolve import finish_model_config, make_run_config
    from salseg.train.trainer import TrainStep, make_optimizer

    cfg = make_run_config(root, TrainSettings(ds, "unet", "none", "2d", 0, **settings), torch.device("cpu"), 1)
    key = (ds, cfg.batch_size, tuple(cfg.patch_size), cfg.options.get("width"))
    if key in _COST:
        return _COST[key]
    train_ids, _ = fold_cases(root, cfg.dataset, 0)
    torch.manual_seed(0)
    model = build_model(cfg)
    cfg = finish_model_config(cfg, model)
    step = TrainStep(model, DeepSupervisionLoss(DiceCELoss()))
    opt = make_optimizer(cfg, model.parameters())
    sampler = PatchSampler(load_cases(R.config_dir(root, cfg.dataset, cfg.data_identifier), train_ids),
                           cfg.patch_size, cfg.batch_size, cfg.mode, cfg.neighbours, cfg.oversample_foreground)
    times = []
    with epoch_batches(sampler, build_transforms(cfg.patch_size, cfg.dim), n + 2, [0, 0, 0], 0) as batches:
        t = time.process_time()
        for batch in batches:
            opt.zero_grad(set_to_none=True)
            loss = step(batch["data"], batch["target"])
            loss.backward()
            opt.step()
            now = time.process_time()
            times.append(now - t)
            t = now
    _COST[key] = float(np.mean(times[2:]))
    return _COST[key]


def _run(root: Path, ds: str, name: str, budget: float, clock: str, calibrate: int, export: bool) -> dict:
    import shutil

    import torch

    from salseg import results as R
    from salseg.fileio import read_json
    from salseg.train import TrainSettings, train
    from salseg.plans import read_plans
    from salseg.train.resolve import make_run_config

    conf = read_plans(R.plans_file(root, ds)).configuration("2d").to_dict()
    settings = _settings(name, list(conf["patch_size"]))
    out = R.fold_dir(root, ds, "unet", "none", "2d", 0)
    if out.exists():
        shutil.rmtree(out)
    row = {"recipe": name, "dataset": ds}
    if clock == "cpu":  # equal CPU time: iterations from the measured CPU seconds per iteration
        spi = _seconds_per_iteration(root, ds, settings, calibrate)
        ipe = make_run_config(root, TrainSettings(ds, "unet", "none", "2d", 0, **settings), torch.device("cpu"),
                              1).iters_per_epoch
        epochs = max(1, round(budget / spi / ipe))
        row["seconds_per_iteration"] = round(spi, 4)
        kwargs = dict(settings, epochs=epochs, val_every=epochs)
    else:
        epochs, kwargs = None, dict(settings, time_budget=budget)

    def hook(epoch, record):
        if not export and "mean_fg_dice" in record and epoch == (epochs or read_json(out / R.CONFIG_JSON)["epochs"]):
            raise _Stop()

    t0 = time.perf_counter()
    try:
        train(root, TrainSettings(ds, "unet", config="2d", fold=0, device="cpu", workers=0, seed=0, **kwargs),
              epoch_hook=hook)
    except _Stop:
        pass
    row["wall_seconds"] = round(time.perf_counter() - t0, 1)
    recs = [json.loads(x) for x in (out / R.LOG_JSONL).read_text().splitlines()]
    cfg = read_json(out / R.CONFIG_JSON)
    row.update(epochs=len(recs), iterations=len(recs) * cfg["iters_per_epoch"], optimizer=cfg["optimizer"],
               lr=cfg["lr"], warmup=cfg.get("warmup_epochs", 0), batch=cfg["batch_size"], patch=cfg["patch_size"],
               width=cfg["options"].get("width"), dice=recs[-1].get("mean_fg_dice"))
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=2.0, help="budget per candidate (CPU or wall minutes)")
    ap.add_argument("--datasets", nargs="+", default=["knee", "synth"], choices=["knee", "synth"])
    ap.add_argument("--recipes", nargs="+", default=list(CANDIDATES), help="candidate names (see --list)")
    ap.add_argument("--iterations", type=int, default=None,
                    help="budget = this many iterations of the default recipe (CPU clock; overrides --minutes)")
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    ap.add_argument("--calibrate", type=int, default=8, help="timed iterations per candidate (--clock cpu)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the data and runs here (default: a temp dir)")
    ap.add_argument("--export", action="store_true", help="also write the mirrored validation export")
    ap.add_argument("--json", type=Path, default=None, help="write the rows here")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args(argv)
    if a.list:
        for k, v in CANDIDATES.items():
            print(f"{k:16s} {v or 'salseg CPU recipe'}")
        return 0
    unknown = [r for r in a.recipes if r not in CANDIDATES]
    if unknown:
        ap.error(f"unknown recipe(s) {', '.join(unknown)}; see --list")
    sys.path.insert(0, str(REPO))
    import torch

    from salseg.train.cpu_defaults import CPU_RECIPE

    torch.set_num_threads(a.threads)
    work = a.workdir or Path(tempfile.mkdtemp(prefix="cpu_recipe_"))
    rows = []
    print(f"budget {a.minutes:g} min per candidate ({a.clock} clock, {a.threads} thread(s)); default recipe "
          f"{CPU_RECIPE.name}; load {os.getloadavg()[0]:.1f}; work dir {work}", flush=True)
    for which in a.datasets:
        root, ds = _prepare(work, which)
        budget = a.minutes * 60.0
        if a.iterations and a.clock == "cpu":
            from salseg import results as R
            from salseg.plans import read_plans

            patch = list(read_plans(R.plans_file(root, ds)).configuration("2d").patch_size)
            budget = a.iterations * _seconds_per_iteration(root, ds, _settings("default", patch), a.calibrate)
            print(f"{ds}: {a.iterations} default-recipe iterations = {budget:.0f} CPU s now", flush=True)
        for name in a.recipes:
            row = _run(root, ds, name, budget, a.clock, a.calibrate, a.export)
            row["load"] = round(os.getloadavg()[0], 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{'dataset':18s} {'recipe':16s} {'s/it':>6s} {'iters':>6s} {'wall s':>7s} {'load':>5s} {'Dice':>7s}")
    for r in rows:
        d = "n/a" if r["dice"] is None else f"{r['dice']:.4f}"
        print(f"{r['dataset']:18s} {r['recipe']:16s} {r.get('seconds_per_iteration', float('nan')):6.3f} "
              f"{r['iterations']:6d} {r['wall_seconds']:7.1f} {r['load']:5.1f} {d:>7s}")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
