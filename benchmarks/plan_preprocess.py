"""Benchmark: `salseg plan` + `salseg preprocess` against nnU-Net v2's `nnUNetv2_plan_and_preprocess`.

Same raw dataset (salseg's raw format is nnU-Net v2's), same number of worker processes, configurations
3d_fullres and 2d, one BLAS/OpenMP thread per process for both. Both tools check the dataset's integrity (salseg
always does; nnU-Net gets --verify_dataset_integrity, unless --nnunet-no-verify). Prints both wall times (command
start to finish, interpreter start-up included), the ratio, and whether the 3d_fullres target spacings agree.

    python benchmarks/plan_preprocess.py [--cases 20] [--jobs N] [--nnunet-bin PATH] [--workdir DIR]

nnU-Net is looked up as `nnUNetv2_plan_and_preprocess` on PATH, then in /work/venv-nnunet/bin; absent -> the
benchmark still times salseg and says that nnU-Net was skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NNUNET_CMD = "nnUNetv2_plan_and_preprocess"
FALLBACK_NNUNET = Path("/work/venv-nnunet/bin") / NNUNET_CMD


def _salseg_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("salseg")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "salseg_cli"]


def _timed(cmd: list[str], env: dict, log: Path) -> float:
    t0 = time.perf_counter()
    with open(log, "ab") as f:
        r = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"command failed ({r.returncode}): {' '.join(cmd)}\n  see {log}")
    return dt


def _make_dataset(root: Path, cases: int, seed: int) -> str:
    from salseg.synthetic import generate_synthetic

    return generate_synthetic(root, cases=cases, seed=seed).name


def _find_nnunet(arg: str | None) -> str | None:
    for cand in (arg, shutil.which(NNUNET_CMD), str(FALLBACK_NNUNET) if FALLBACK_NNUNET.is_file() else None):
        if cand and Path(cand).is_file():
            return cand
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--nnunet-bin", default=None)
    ap.add_argument("--nnunet-no-verify", action="store_true", help="run nnU-Net without its integrity check")
    ap.add_argument("--workdir", type=Path, default=None, help="kept if given (else a temporary folder)")
    args = ap.parse_args(argv)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="salseg_bench_pp_"))
    work.mkdir(parents=True, exist_ok=True)
    root = work / "salseg_root"
    if root.exists():
        shutil.rmtree(root)
    log = work / "bench.log"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    ds = _make_dataset(root, args.cases, args.seed)
    did = int(ds[7:10])
    print(f"dataset {ds}: {args.cases} synthetic cases, {args.jobs} worker(s), work dir {work}")

    s = _salseg_cmd() + ["--root", str(root)]
    t_plan = _timed(s + ["plan", ds, "-j", str(args.jobs)], env, log)
    t_pre = _timed(s + ["preprocess", ds, "-c", "3d_fullres", "2d", "-j", str(args.jobs)], env, log)
    t_salseg = t_plan + t_pre
    plans = json.loads((root / "preprocessed" / ds / "plans.json").read_text())
    sp_salseg = plans["configurations"]["3d_fullres"]["spacing"]
    print(f"salseg : plan {t_plan:.1f} s + preprocess {t_pre:.1f} s = {t_salseg:.1f} s; "
          f"3d_fullres spacing {[round(x, 4) for x in sp_salseg]}")

    nn = _find_nnunet(args.nnunet_bin)
    if nn is None:
        print(f"nnU-Net: skipped ({NNUNET_CMD} not found; install nnunetv2 with torch pinned, see the module doc)")
        return 0
    pre = work / "nnunet_preprocessed"
    if pre.exists():
        shutil.rmtree(pre)
    nenv = dict(env, nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(pre),
                nnUNet_results=str(work / "nnunet_results"))
    cmd = [nn, "-d", str(did), "-c", "3d_fullres", "2d", "-np", str(args.jobs), str(args.jobs),
           "-npfp", str(args.jobs)]
    if not args.nnunet_no_verify:
        cmd.append("--verify_dataset_integrity")
    t_nn = _timed(cmd, nenv, log)
    nplans = json.loads((pre / ds / "nnUNetPlans.json").read_text())
    back = nplans.get("transpose_backward", [0, 1, 2])
    sp_t = nplans["configurations"]["3d_fullres"]["spacing"]
    sp_nn = [sp_t[i] for i in back]
    agree = all(abs(a - b) <= 1e-4 * max(1.0, abs(b)) for a, b in zip(sp_salseg, sp_nn))
    print(f"nnU-Net: plan_and_preprocess {t_nn:.1f} s; 3d_fullres spacing {[round(x, 4) for x in sp_nn]}")
    print(f"ratio salseg / nnU-Net = {t_salseg / t_nn:.2f}  (goal <= 1.00)")
    print(f"3d_fullres target spacings agree: {'yes' if agree else 'NO'}")
    pn = nplans["configurations"]["3d_fullres"]["patch_size"]
    print(f"3d_fullres patch: salseg {plans['configurations']['3d_fullres']['patch_size']}, "
          f"nnU-Net {[pn[i] for i in back]}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
