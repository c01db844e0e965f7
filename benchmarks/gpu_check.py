"""Does salseg's CUDA path work on this machine? One table, non-zero exit on any failure.

    PYTHONPATH=$PWD python benchmarks/gpu_check.py [--steps 5] [--json out.json] [--keep DIR]
    PYTHONPATH=$PWD python benchmarks/gpu_check.py --cpu-smoke      # same code paths on the CPU, tiny sizes

For every combination — unet (2d, 3d_fullres), mtunet, swinunet, swinunetr (3D), resenc (when registered),
medsegdiff, ldseg, and unet / mtunet with salstm and lstmsa at the head and the bottleneck and stack (when
registered; head only, other positions are for slice modules) — it builds the network as ``salseg train`` does
from the plans of a small synthetic dataset (so batch and patch are the plans' GPU sizes and the network's
recipe), then runs
1. one training step under AMP (autocast + GradScaler, as the trainer): the loss must be finite;
2. one inference window (eval, autocast; diffusion networks: a 2-step DDIM sample): the output must be finite;
3. ``--steps`` timed training steps: it/s and the peak GPU memory of the combination.
Then ``torchrun`` trains one epoch of a tiny unet through the CLI with DDP on every GPU present (``salseg train``,
nccl), and the suite's CUDA tests run with pytest (they skip on a machine without CUDA). Whole run: a few minutes
on one GPU; nothing is downloaded. Without CUDA (and without ``--cpu-smoke``) it stops with a message and exit
code 2. ``--cpu-smoke`` runs every step on the CPU with tiny networks (float32, bfloat16 autocast for the step),
DDP over gloo with 1 process, so the script itself is exercised on any machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATASET = "SynthACDC"
CUDA_TESTS = ["tests/nets/test_mtunet.py::test_runs_on_cuda",
              "tests/nets/test_fp16_attention.py::test_module_finite_under_cuda_autocast"]

# per network: tiny options for --cpu-smoke (sizes must respect the network's divisor / fixed size)
SMOKE = {
    "unet": {"width": 4, "patch2": [32, 32], "patch3": [16, 32, 32]},
    "resenc": {"width": 4, "patch2": [32, 32], "patch3": [16, 32, 32]},
    "mtunet": {"width": 8, "patch2": [224, 224]},
    "swinunet": {"width": 12, "heads": [3, 3, 3, 3], "patch2": [64, 64]},
    "swinunetr": {"width": 6, "heads": [3, 3, 3, 3], "patch3": [32, 32, 64]},   # > 1 voxel at 1/32
    "medsegdiff": {"width": 4, "patch2": [32, 32]},
    "ldseg": {"arch": "compact", "width": 4, "denoiser_widths": [8, 8, 16], "emb_dim": 16, "patch2": [32, 32]},
}


def combinations() -> list[tuple[str, str, str, str]]:
    """(network, module, position, config) to check; networks and modules not registered are left out."""
    from salseg.nets import modules, networks

    nets, mods = networks(), modules()
    out = [("unet", "none", "head", "2d"), ("unet", "none", "head", "3d_fullres")]
    out += [(n, "none", "head", "2d") for n in ("mtunet", "swinunet")]
    out += [("swinunetr", "none", "head", "3d_fullres")]
    if "resenc" in nets:
        out += [("resenc", "none", "head", "2d"), ("resenc", "none", "head", "3d_fullres")]
    out += [(n, "none", "head", "2d") for n in ("medsegdiff", "ldseg")]
    for net in ("unet", "mtunet"):
        for mod in ("salstm", "lstmsa", "stack"):
            if mod in mods:  # positions other than the head exist for slice modules only
                positions = ("head", "bottleneck") if mods[mod].kind == "slice" else ("head",)
                out += [(net, mod, pos, "2d") for pos in positions]
    return [c for c in out if c[0] in nets]


def make_dataset(root: Path, smoke: bool) -> None:
    from salseg.plan import plan_dataset
    from salseg.preprocess import preprocess_dataset
    from salseg.synthetic import generate_synthetic

    generate_synthetic(root, cases=4, seed=0)
    plan_dataset(root, DATASET, configs=["2d", "3d_fullres"], seed=0)
    preprocess_dataset(root, DATASET, configs=["2d"], num_workers=1)  # for the DDP run


def run_settings(network: str, module: str, config: str, smoke: bool) -> dict:
    if not smoke:
        return {}
    o = dict(SMOKE.get(network, {}))
    patch = o.pop("patch3" if config == "3d_fullres" else "patch2", None)
    o.pop("patch2", None), o.pop("patch3", None)
    from salseg.nets import get_module

    slice_kind = get_module(module).kind == "slice"
    s = {"batch_size": 2, "options": {**o, **({"features": 4} if slice_kind else {})}}
    if patch:
        s["patch_size"] = patch
    if "width" in o and network == "unet":
        s["width"] = s["options"].pop("width")
    return s


def check_one(root: Path, combo, dev: torch.device, steps: int, smoke: bool) -> dict:
    """Train step, inference window and throughput of one combination -> a table row."""
    from salseg.nets import check_pair
    from salseg.run.config import CONFIG_DIMS
    from salseg.run.model import build_model
    from salseg.train.losses import DeepSupervisionLoss, DiceCELoss
    from salseg.train import TrainSettings
    from salseg.train.resolve import finish_model_config, make_run_config
    from salseg.train.trainer import TrainStep, make_optimizer
    from salseg.errors import SalsegError

    net, mod, pos, config = combo
    row = {"network": net, "module": mod, "position": pos, "config": config}
    try:
        check_pair(net, mod, CONFIG_DIMS[config])
    except SalsegError as e:
        return {**row, "status": "n/a", "note": str(e).splitlines()[0][:60]}
    settings = TrainSettings(DATASET, net, mod, config, 0, position=pos, **run_settings(net, mod, config, smoke))
    cfg = make_run_config(root, settings, dev, 1)
    torch.manual_seed(0)
    model = build_model(cfg)
    cfg = finish_model_config(cfg, model)
    cuda = dev.type == "cuda"
    model = model.to(dev)
    step_module = TrainStep(model, DeepSupervisionLoss(DiceCELoss()))
    opt = make_optimizer(cfg, model.parameters())
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    amp = dict(device_type=dev.type, dtype=torch.float16 if cuda else torch.bfloat16)
    lead = [cfg.neighbours] if cfg.mode == "2.5d" else []
    x = torch.randn(cfg.batch_size, *lead, cfg.in_channels, *cfg.patch_size, device=dev)
    y = torch.randint(0, cfg.num_classes, (cfg.batch_size, 1, *cfg.patch_size), device=dev)
    row.update(batch=cfg.batch_size, patch="x".join(map(str, cfg.patch_size)))

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(**amp):
            loss = step_module(x, y)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(opt)
        scaler.update()
        return loss

    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    step_module.train()
    loss = float(step().detach())
    if not math.isfinite(loss):
        return {**row, "status": "FAIL", "note": f"training loss {loss}"}
    model.eval()
    with torch.inference_mode(), torch.autocast(**amp):
        if getattr(model, "is_diffusion", False):
            out = model.sample(x[:1], steps=2, sampler="ddim")
        else:
            out = model(x[:1])
            out = out[0] if isinstance(out, (list, tuple)) else out
    if not bool(torch.isfinite(out.float()).all()):
        return {**row, "status": "FAIL", "note": "non-finite inference output"}
    step_module.train()
    if cuda:
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    last = float(loss.detach())
    if cuda:
        torch.cuda.synchronize(dev)
    rate = steps / (time.perf_counter() - t0)
    if not math.isfinite(last):
        return {**row, "status": "FAIL", "note": f"loss {last} after {steps} steps"}
    mem = torch.cuda.max_memory_allocated(dev) / 2 ** 30 if cuda else float("nan")
    return {**row, "status": "ok", "it_s": rate, "peak_gib": mem, "loss": last, "note": ""}


def run_ddp(root: Path, smoke: bool) -> dict:
    """``salseg train`` under torchrun on every GPU (1 process with gloo on the CPU in smoke mode)."""
    n = 1 if smoke else max(1, torch.cuda.device_count())
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n), "-m",
           "salseg_cli", "--root", str(root), "train", DATASET, "unet", "--config", "2d", "--fold", "0",
           "--device", "cpu" if smoke else "cuda", "--epochs", "1", "--iters-per-epoch", "3", "--batch-size", "2",
           "--width", "4", "--workers", "0", "--quiet"] + (["--patch-size", "32", "32"] if smoke else [])
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    row = {"network": "unet", "module": "none", "position": "head", "config": f"DDP x{n}",
           "it_s": 3 / (time.perf_counter() - t0)}
    if p.returncode != 0:
        return {**row, "status": "FAIL", "note": (p.stderr.strip().splitlines() or ["?"])[-1][:60]}
    return {**row, "status": "ok", "note": "salseg train under torchrun (incl. start-up)"}


def run_cuda_tests() -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *CUDA_TESTS],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    summary = (p.stdout.strip().splitlines() or ["?"])[-1]
    status = "ok" if p.returncode == 0 else "FAIL"
    if "skipped" in summary and "passed" not in summary:
        status = "skip"
    return {"network": "suite", "module": "CUDA tests", "position": "", "config": "", "status": status,
            "note": summary[:60]}


def print_table(rows: list[dict], device: str) -> None:
    print(f"\nsalseg GPU check on {device}")
    head = f"{'network':10s} {'module':10s} {'pos':10s} {'config':10s} {'batch':>5s} {'patch':>11s} " \
           f"{'it/s':>7s} {'peak GiB':>8s} status  note"
    print(head)
    print("-" * len(head))
    for r in rows:
        it = f"{r['it_s']:7.2f}" if "it_s" in r else " " * 7
        mem = f"{r['peak_gib']:8.2f}" if isinstance(r.get("peak_gib"), float) and r["peak_gib"] == r["peak_gib"] \
            else " " * 8
        print(f"{r['network']:10s} {r['module']:10s} {r['position']:10s} {r['config']:10s} "
              f"{str(r.get('batch', '')):>5s} {r.get('patch', ''):>11s} {it} {mem} {r['status']:6s}  "
              f"{r.get('note', '')}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-smoke", action="store_true", help="run the same code paths on the CPU, tiny sizes")
    ap.add_argument("--steps", type=int, default=5, help="timed training steps per combination")
    ap.add_argument("--only", nargs="*", help="networks to check (default: all)")
    ap.add_argument("--skip-ddp", action="store_true")
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--json", help="also write the rows as JSON here")
    ap.add_argument("--keep", help="keep the synthetic dataset in this folder (default: a temporary one)")
    args = ap.parse_args()
    if not args.cpu_smoke and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU is visible to torch (torch.cuda.is_available() is False); run it on a GPU "
              "machine, or use --cpu-smoke to exercise the same code paths on the CPU.", file=sys.stderr)
        return 2
    import logging
    logging.disable(logging.WARNING)
    dev = torch.device("cpu" if args.cpu_smoke else "cuda")
    if args.cpu_smoke:
        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    name = "CPU (smoke mode, tiny sizes)" if args.cpu_smoke else torch.cuda.get_device_name(0)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as td:
        root = Path(args.keep or td)
        make_dataset(root, args.cpu_smoke)
        rows = []
        for combo in combinations():
            if args.only and combo[0] not in args.only:
                continue
            t0 = time.perf_counter()
            try:
                row = check_one(root, combo, dev, args.steps, args.cpu_smoke)
            except Exception as e:  # a crash is a failure of this combination, the others still run
                traceback.print_exc(file=sys.stderr)
                row = {"network": combo[0], "module": combo[1], "position": combo[2], "config": combo[3],
                       "status": "FAIL", "note": f"{type(e).__name__}: {e}".splitlines()[0][:60]}
            print(f"  {'/'.join(combo)}: {row['status']} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
            rows.append(row)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        if not args.skip_ddp:
            rows.append(run_ddp(root, args.cpu_smoke))
        if not args.skip_tests:
            rows.append(run_cuda_tests())
    print_table(rows, name)
    failed = [r for r in rows if r["status"] == "FAIL"]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} rows passed or skipped, {len(failed)} failed; "
          f"{time.perf_counter() - t_start:.0f} s in all")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "rows": rows}, indent=1, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
