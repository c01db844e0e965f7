"""Benchmark: salseg's planner presets against nnU-Net v2's planners on the same raw dataset.

Runs nnU-Net's ``ExperimentPlanner`` (default), ``nnUNetPlannerResEncM`` and ``nnUNetPlannerResEncL`` (``--xl`` adds
``nnUNetPlannerResEncXL``) after its fingerprint extraction, and ``salseg plan --preset default|resenc-m|resenc-l``
on the same raw dataset, then prints per preset and configuration (2d, 3d_fullres) the spacing, patch, batch,
pooling, conv kernels, features, blocks per stage (residual blocks or convs), decoder convs and parameter counts
side by side, with a verdict per line, and finally copies the weights of two small nnU-Net ResidualEncoderUNets
(2D, anisotropic 3D) into salseg's ``resenc`` and compares every deep-supervision output. Parameters: salseg's
network built from its plans; nnU-Net's network built from its plans (with deep supervision) minus its deepest
deep-supervision head, which nnU-Net weights 0 and salseg does not build (the full nnU-Net count is printed too).

    python benchmarks/plan_parity.py [--dataset RAW_DATASET_DIR] [--nnunet-bin-dir DIR] [--cases 10] [--xl]
                                     [--workdir DIR] [--json OUT.json]

Default dataset: salseg's synthetic cardiac-MRI-like dataset (``--cases`` cases). ``--dataset`` takes any raw
dataset folder in nnU-Net v2 format (``DatasetNNN_Name`` with dataset.json, imagesTr, labelsTr; e.g. the output of
``salseg convert folder``); it is linked, not copied. nnU-Net is looked up in ``--nnunet-bin-dir`` (the ``bin``
folder of a venv with nnunetv2: its ``nnUNetv2_*`` scripts and its ``python``), else ``nnUNetv2_plan_experiment`` on
PATH, else /work/nnunet_venv/bin; absent -> only salseg's plans are printed, with a message. Install nnU-Net in its
own venv with torch pinned to the one salseg uses (``pip install nnunetv2 torch==<salseg's>``), so the parameter
counts come from the same layer implementations.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PRESETS = [("default", "ExperimentPlanner", "nnUNetPlans"),
           ("resenc-m", "nnUNetPlannerResEncM", "nnUNetResEncUNetMPlans"),
           ("resenc-l", "nnUNetPlannerResEncL", "nnUNetResEncUNetLPlans")]
XL = ("resenc-xl", "nnUNetPlannerResEncXL", "nnUNetResEncUNetXLPlans")
CONFIGS = ("2d", "3d_fullres")
FALLBACK_BIN = Path("/work/nnunet_venv/bin")

# run by nnU-Net's python: parameter counts of its networks built from its plans (deep supervision on)
NNUNET_COUNT = r"""
import json, sys
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
plans, n_in, n_out = json.load(open(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3])
out = {}
for name, c in plans["configurations"].items():
    if "architecture" not in c:
        continue
    a = c["architecture"]
    net = get_network_from_plans(a["network_class_name"], a["arch_kwargs"], a["_kw_requires_import"], n_in, n_out,
                                 allow_init=False, deep_supervision=True)
    total = sum(p.numel() for p in net.parameters())
    deepest = sum(p.numel() for p in net.decoder.seg_layers[0].parameters())
    out[name] = [total, deepest]
print(json.dumps(out))
"""


# run by nnU-Net's python: a small ResidualEncoderUNet's weights (by group, in registration order) and its outputs
NNUNET_FORWARD = r"""
import json, sys
import numpy as np, torch
from torch import nn
from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet
spec = json.loads(sys.argv[1]); out = sys.argv[2]
dim = len(spec["pools"][0])
torch.manual_seed(0)
conv = nn.Conv2d if dim == 2 else nn.Conv3d
n = len(spec["features"])
net = ResidualEncoderUNet(spec["cin"], n, spec["features"], conv, spec["kernels"], spec["pools"], spec["blocks"],
                          spec["classes"], [1] * (n - 1), conv_bias=True,
                          norm_op=nn.InstanceNorm2d if dim == 2 else nn.InstanceNorm3d,
                          norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU,
                          nonlin_kwargs={"inplace": True}, deep_supervision=True)
with torch.no_grad():
    for p in net.parameters():  # random non-zero weights everywhere (also the zero-initialised norms)
        p.copy_(torch.randn_like(p) * 0.1)
x = torch.randn(2, spec["cin"], *spec["size"])
with torch.no_grad():
    y = net(x)
arrays = {"x": x.numpy()}
groups = {"encoder": net.encoder, "up": net.decoder.transpconvs, "decoder": net.decoder.stages}
for g, m in groups.items():
    for i, p in enumerate(m.parameters()):
        arrays[f"{g}_{i:04d}"] = p.detach().numpy()
for s, layer in enumerate(net.decoder.seg_layers):
    for i, p in enumerate(layer.parameters()):
        arrays[f"seg{s}_{i}"] = p.detach().numpy()
for s, o in enumerate(y):
    arrays[f"y{s}"] = o.numpy()
np.savez(out, **arrays)
"""
FORWARD_SPECS = [
    {"cin": 2, "classes": 3, "size": [32, 48], "pools": [[1, 1], [2, 2], [2, 2], [2, 2]], "kernels": [[3, 3]] * 4,
     "features": [8, 16, 32, 32], "blocks": [1, 3, 4, 6]},
    {"cin": 1, "classes": 2, "size": [8, 32, 32], "pools": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [1, 2, 2]],
     "kernels": [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]], "features": [8, 16, 24, 24], "blocks": [1, 3, 4, 6]},
]


def forward_parity(bin_dir: Path, work: Path, log: Path) -> list[str]:
    """Copy nnU-Net ResidualEncoderUNet weights into salseg's resenc and compare every deep-supervision output."""
    import numpy as np
    import torch

    from salseg.nets import build

    script = work / "nnunet_forward.py"
    script.write_text(NNUNET_FORWARD)
    lines = []
    for k, spec in enumerate(FORWARD_SPECS):
        out = work / f"forward_{k}.npz"
        _run([bin_dir / "python", script, json.dumps(spec), out], dict(os.environ), log)
        a = np.load(out)
        plans = {"pool_op_kernel_sizes": spec["pools"], "conv_kernel_sizes": spec["kernels"],
                 "features_per_stage": spec["features"], "n_blocks_per_stage": spec["blocks"]}
        net = build("resenc", in_channels=spec["cin"], num_classes=spec["classes"], dim=len(spec["size"]),
                    plans=plans).train()
        n = len(spec["features"])
        with torch.no_grad():
            for g, m in (("encoder", net.encoder), ("up", net.up), ("decoder", net.decoder)):
                for i, p in enumerate(m.parameters()):
                    p.copy_(torch.from_numpy(a[f"{g}_{i:04d}"]))
            for j, layer in enumerate(net.seg_layers):  # salseg head j (encoder stage j) = nnU-Net decoder stage n-2-j
                for i, p in enumerate(layer.parameters()):
                    p.copy_(torch.from_numpy(a[f"seg{n - 2 - j}_{i}"]))
            ys = net(torch.from_numpy(a["x"]))
        diffs = [float((y - torch.from_numpy(a[f"y{s}"])).abs().max()) for s, y in enumerate(ys)]
        scale = max(float(np.abs(a[f"y{s}"]).max()) for s in range(len(ys)))
        ok = max(diffs) <= 1e-4 * max(1.0, scale)
        lines.append(f"forward {len(spec['size'])}D {spec['size']}: {len(ys)} DS outputs, max |salseg - nnU-Net| "
                     f"{max(diffs):.2e} (outputs up to {scale:.2e}) -> {'same' if ok else 'DIFFERENT'}")
    return lines


def find_nnunet(bin_dir: str | None) -> Path | None:
    cands = [Path(bin_dir)] if bin_dir else []
    which = shutil.which("nnUNetv2_plan_experiment")
    if which:
        cands.append(Path(which).parent)
    cands.append(FALLBACK_BIN)
    for d in cands:
        if (d / "nnUNetv2_plan_experiment").is_file() and (d / "nnUNetv2_extract_fingerprint").is_file():
            return d
    return None


def _run(cmd, env, log: Path) -> str:
    r = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True)
    with open(log, "a") as f:
        f.write(f"$ {' '.join(map(str, cmd))}\n{r.stdout}\n{r.stderr}\n")
    if r.returncode != 0:
        sys.exit(f"command failed ({r.returncode}): {' '.join(map(str, cmd))}\n  see {log}")
    return r.stdout


def prepare_dataset(root: Path, dataset: Path | None, cases: int, seed: int) -> str:
    (root / "raw").mkdir(parents=True, exist_ok=True)
    if dataset is None:
        from salseg.synthetic import generate_synthetic

        return generate_synthetic(root, cases=cases, seed=seed).name
    dataset = dataset.resolve()
    if not (dataset / "dataset.json").is_file():
        sys.exit(f"{dataset}: not a raw dataset folder (no dataset.json)")
    link = root / "raw" / dataset.name
    if not link.exists():
        link.symlink_to(dataset, target_is_directory=True)
    return dataset.name


def salseg_plans(root: Path, ds: str, presets) -> dict:
    from salseg.plan import plan_dataset

    return {p: plan_dataset(root, ds, preset=p, configs=list(CONFIGS_FOR[ds])) for p, _, _ in presets}


CONFIGS_FOR: dict = {}


def salseg_params(plans: dict, config: str) -> int:
    from salseg.nets import build

    conf = plans["configurations"][config]
    model = build(plans.get("network", "unet"), in_channels=int(plans["num_channels"]),
                  num_classes=len(plans["label_values"]), dim=int(conf["dim"]), plans=conf)
    return sum(p.numel() for p in model.parameters())


def nnunet_plans(bin_dir: Path, root: Path, ds: str, work: Path, presets, log: Path) -> tuple[dict, dict]:
    env = dict(os.environ, nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(work / "nnunet_preprocessed"),
               nnUNet_results=str(work / "nnunet_results"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    did = str(int(ds[7:10]))
    _run([bin_dir / "nnUNetv2_extract_fingerprint", "-d", did, "-np", "1"], env, log)
    info = json.loads((root / "raw" / ds / "dataset.json").read_text())
    n_in, n_out = len(info["channel_names"]), len(info["labels"])
    script = work / "nnunet_count.py"
    script.write_text(NNUNET_COUNT)
    plans, counts = {}, {}
    for preset, planner, ident in presets:
        _run([bin_dir / "nnUNetv2_plan_experiment", "-d", did, "-pl", planner], env, log)
        path = work / "nnunet_preprocessed" / ds / f"{ident}.json"
        plans[preset] = json.loads(path.read_text())
        counts[preset] = json.loads(_run([bin_dir / "python", script, path, n_in, n_out], env, log))
    return plans, counts


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        if v and isinstance(v[0], (list, tuple)):
            return " ".join("x".join(str(int(a)) for a in s) for s in v)
        return "x".join(_fmt(a) for a in v)
    return str(v)


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(a)))
    return a == b


def rows_for(preset: str, config: str, ours: dict, theirs: dict | None, count: list | None) -> list[dict]:
    c = ours["configurations"][config]
    blocks = c.get("n_blocks_per_stage") or c.get("n_conv_per_stage")
    mine = {"spacing": c["spacing"], "patch": c["patch_size"], "batch": c["batch_size"],
            "pools": c["pool_op_kernel_sizes"], "kernels": c["conv_kernel_sizes"],
            "features": c["features_per_stage"], "blocks/stage": blocks,
            "decoder convs": c.get("n_conv_per_stage_decoder"), "params": salseg_params(ours, config)}
    ref: dict = {}
    if theirs is not None and config in theirs["configurations"]:
        t = theirs["configurations"][config]
        a = t["architecture"]["arch_kwargs"]
        ref = {"spacing": t["spacing"], "patch": t["patch_size"], "batch": t["batch_size"], "pools": a["strides"],
               "kernels": a["kernel_sizes"], "features": a["features_per_stage"],
               "blocks/stage": a.get("n_blocks_per_stage") or a.get("n_conv_per_stage"),
               "decoder convs": a["n_conv_per_stage_decoder"]}
        if count:
            ref["params"] = count[0] - count[1]
    out = []
    for key, v in mine.items():
        row = {"preset": preset, "config": config, "field": key, "salseg": v, "nnunet": ref.get(key)}
        row["verdict"] = ("-" if key not in ref else "same" if _same(v, ref[key]) else "DIFFERENT")
        if key == "params" and count:
            row["note"] = f"nnU-Net total {count[0]:,} incl. its deepest DS head ({count[1]:,})"
        out.append(row)
    return out


def print_rows(rows: list[dict]) -> None:
    cells = []
    for r in rows:
        s, n = _fmt(r["salseg"]), "-" if r["nnunet"] is None else _fmt(r["nnunet"])
        if r["field"] == "params":
            s, n = f"{r['salseg']:,}", "-" if r["nnunet"] is None else f"{r['nnunet']:,}"
        cells.append((r["preset"], r["config"], r["field"], s, n, r["verdict"]))
    head = ("preset", "config", "field", "salseg", "nnU-Net", "verdict")
    widths = [max(len(c[i]) for c in cells + [head]) for i in range(6)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*head))
    for r, c in zip(rows, cells):
        print(line.format(*c))
        if r.get("note"):
            print(" " * (sum(widths[:3]) + 6) + f"({r['note']})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, default=None, help="raw dataset folder (default: synthetic)")
    ap.add_argument("--nnunet-bin-dir", default=None, help="bin folder of a venv with nnunetv2")
    ap.add_argument("--cases", type=int, default=10, help="synthetic cases (without --dataset)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--xl", action="store_true", help="also compare ResEnc XL")
    ap.add_argument("--workdir", type=Path, default=None, help="kept if given (else a temporary folder)")
    ap.add_argument("--json", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    presets = PRESETS + ([XL] if args.xl else [])
    work = args.workdir or Path(tempfile.mkdtemp(prefix="salseg_plan_parity_"))
    work.mkdir(parents=True, exist_ok=True)
    root = work / "root"
    ds = prepare_dataset(root, args.dataset, args.cases, args.seed)
    info = json.loads((root / "raw" / ds / "dataset.json").read_text())
    from salseg.dataset.io import read_image  # noqa: F401  (import check: salseg installed)

    fp_is_2d = str(info.get("file_ending", "")).lower() in (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
    CONFIGS_FOR[ds] = ("2d",) if fp_is_2d else CONFIGS
    print(f"dataset {ds} ({'synthetic, %d cases' % args.cases if args.dataset is None else args.dataset}); "
          f"work dir {work}")
    ours = salseg_plans(root, ds, presets)
    bin_dir = find_nnunet(args.nnunet_bin_dir)
    theirs, counts = {}, {}
    if bin_dir is None:
        print("nnU-Net: skipped (nnUNetv2_plan_experiment not found in --nnunet-bin-dir, on PATH or in "
              f"{FALLBACK_BIN}; install nnunetv2 in its own venv with torch pinned, see the module doc)")
    else:
        print(f"nnU-Net: {bin_dir}")
        theirs, counts = nnunet_plans(bin_dir, root, ds, work, presets, work / "nnunet.log")
        tf = next(iter(theirs.values()))["transpose_forward"]
        if tf != [0, 1, 2]:
            print(f"note: nnU-Net transposes the axes {tf} (salseg does not; its 2d slices along axis 0)")
    rows = []
    for preset, _, _ in presets:
        for config in CONFIGS_FOR[ds]:
            rows += rows_for(preset, config, ours[preset], theirs.get(preset), counts.get(preset, {}).get(config))
    print_rows(rows)
    compared = [r for r in rows if r["verdict"] != "-"]
    diff = [r for r in compared if r["verdict"] != "same"]
    if bin_dir is not None:
        for line in forward_parity(bin_dir, work, work / "nnunet.log"):
            print(line)
            diff += [line] if line.endswith("DIFFERENT") else []
    print(f"{len(compared)} field(s) compared, {len(diff)} different" if compared else "nothing compared")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
