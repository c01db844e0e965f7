"""Export to the original geometry: salseg's scipy path, its torch path, and nnU-Net 2.x's export, same probabilities.

    PYTHONPATH=$PWD /work/main/.venv/bin/python benchmarks/export.py [--cases knee small ct] [--ct-scale 1.0]
        [--repeats 3] [--threads 1] [--device cpu|cuda] [--nnunet-python /work/nnunet_venv/bin/python]

Cases (probabilities are smooth random class blobs on the preprocessed grid; the raw image has a zero border, so
the crop box is a strict sub-box):
- ``knee``: 3 classes, 160 x 104 x 240 at 1 mm, preprocessed at the same spacing (no resampling, crop only);
- ``small``: 3 classes, 40 x 300 x 300 at (3.0, 0.7, 0.7) mm exported from (3.0, 1.0, 1.0) mm (thick z: nearest
  along z, linear in-plane);
- ``ct``: 14 classes, probabilities at 1.5 mm exported to 200 x 512 x 512 at 0.8 mm (``--ct-scale`` s shrinks
  every axis of both grids by s, for small machines; the output says which size ran).
Each timing covers the whole export: resampling, argmax, un-crop and writing the .nii.gz label file. nnU-Net runs
``nnunetv2.inference.export_prediction.export_prediction_from_logits`` in its own venv (a subprocess) on the same
probabilities saved as .npy (argmax of probabilities = argmax of logits for softmax models; nnU-Net resamples
whatever it is given, so the work is the same); it is skipped with a message when that venv is absent. Times are
medians of ``--repeats`` runs after a warm-up; the label maps of all paths are compared voxel by voxel.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

NNUNET_PYTHON = "/work/nnunet_venv/bin/python"

NNUNET_SCRIPT = r"""
import json, sys, time, statistics
import numpy as np, torch
from nnunetv2.inference.export_prediction import export_prediction_from_logits
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
cfg = json.load(open(sys.argv[1]))
probs = np.load(cfg["probs"])
torch.set_num_threads(cfg["threads"])
plans = {"dataset_name": "Dataset999_Bench", "plans_name": "nnUNetPlans", "image_reader_writer": "SimpleITKIO",
         "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2], "label_manager": "LabelManager",
         "original_median_spacing_after_transp": cfg["original_spacing"],
         "original_median_shape_after_transp": cfg["original_shape"], "experiment_planner_used": "bench",
         "foreground_intensity_properties_per_channel": {},
         "configurations": {"3d_fullres": {
             "data_identifier": "x", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
             "patch_size": [64, 64, 64], "spacing": cfg["spacing"], "normalization_schemes": ["ZScoreNormalization"],
             "use_mask_for_norm": [False], "architecture": {"network_class_name": "x", "arch_kwargs": {},
                                                            "_kw_requires_import": []},
             "resampling_fn_data": "resample_data_or_seg_to_shape",
             "resampling_fn_seg": "resample_data_or_seg_to_shape",
             "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
             "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
             "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
             "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0,
                                                    "force_separate_z": None}}}}
pm = PlansManager(plans)
cm = pm.get_configuration("3d_fullres")
props = {"spacing": cfg["original_spacing"], "shape_before_cropping": cfg["original_shape"],
         "bbox_used_for_cropping": cfg["bbox"], "shape_after_cropping_and_before_resampling": cfg["crop_shape"],
         "sitk_stuff": {"spacing": cfg["original_spacing"][::-1], "origin": [0.0, 0.0, 0.0],
                        "direction": [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]}}
ds = {"labels": {str(i) if i else "background": i for i in range(probs.shape[0])}, "file_ending": ".nii.gz"}
times = []
for r in range(cfg["repeats"] + 1):
    t0 = time.perf_counter()
    export_prediction_from_logits(probs, props, cm, pm, ds, cfg["out"], save_probabilities=False,
                                  num_threads_torch=cfg["threads"])
    times.append(time.perf_counter() - t0)
print(json.dumps({"time": statistics.median(times[1:])}))
"""


def make_case(name: str, ct_scale: float):
    """(probabilities (K, Z', Y', X') float32, salseg properties, description) of one benchmark case."""
    if name == "knee":
        k, shape, spacing, target = 3, (160, 104, 240), (1.0, 1.0, 1.0), (1.0, 1.0, 1.0)
    elif name == "small":
        k, shape, spacing, target = 3, (40, 300, 300), (3.0, 0.7, 0.7), (3.0, 1.0, 1.0)
    elif name == "ct":
        k, spacing, target = 14, (0.8, 0.8, 0.8), (1.5, 1.5, 1.5)
        shape = tuple(max(8, int(round(s * ct_scale))) for s in (200, 512, 512))
    else:
        raise SystemExit(f"unknown case {name!r}")
    from salseg.preprocess.resample import new_shape, separate_axis

    border = [max(1, s // 20) for s in shape]
    bbox = [[b, s - b] for b, s in zip(border, shape)]
    crop = [b1 - b0 for b0, b1 in bbox]
    pre = new_shape(crop, spacing, target)
    g = torch.Generator().manual_seed(0)
    coarse = torch.randn(1, k, *[max(2, p // 8) for p in pre], generator=g) * 8
    probs = torch.softmax(F.interpolate(coarse, size=pre, mode="trilinear", align_corners=False)[0], 0)
    original = {"spacing": list(spacing), "origin": [0.0, 0.0, 0.0], "direction": [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0],
                "shape": list(shape), "ndim": 3}
    props = {"case_id": name, "shape_after_resample": pre, "shape_after_crop": crop, "crop_bbox": bbox,
             "spacing_after_crop": list(spacing), "spacing": list(target),
             "separate_axis": separate_axis(spacing, target), "original": original}
    desc = (f"{name}: {k} classes, {'x'.join(map(str, pre))} at {target} mm -> {'x'.join(map(str, shape))} at "
            f"{spacing} mm")
    return probs.numpy().astype(np.float32), props, desc


def time_salseg(probs, props, method: str, out: Path, repeats: int, device: str) -> tuple[float, np.ndarray]:
    from salseg.infer.export import export_prediction

    times = []
    for _ in range(repeats + 1):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        export_prediction(probs, props, list(range(probs.shape[0])), out, method=method,
                          device=device if method == "torch" else None)
        times.append(time.perf_counter() - t0)
    import SimpleITK as sitk
    return statistics.median(times[1:]), sitk.GetArrayFromImage(sitk.ReadImage(str(out)))


def time_nnunet(python: str, probs, props, tmp: Path, repeats: int, threads: int) -> tuple[float, np.ndarray] | str:
    if not Path(python).is_file():
        return f"nnU-Net venv not found ({python}): skipped"
    np.save(tmp / "probs.npy", probs)
    cfg = {"probs": str(tmp / "probs.npy"), "threads": threads, "repeats": repeats, "spacing": props["spacing"],
           "original_spacing": props["original"]["spacing"], "original_shape": props["original"]["shape"],
           "bbox": props["crop_bbox"], "crop_shape": props["shape_after_crop"], "out": str(tmp / "nnunet")}
    (tmp / "cfg.json").write_text(json.dumps(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "nnUNet_raw": str(tmp), "nnUNet_preprocessed": str(tmp),
           "nnUNet_results": str(tmp)}
    env.pop("PYTHONPATH", None)
    r = subprocess.run([python, "-c", NNUNET_SCRIPT, str(tmp / "cfg.json")], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        return "nnU-Net export failed: " + (r.stderr.strip().splitlines() or ["?"])[-1]
    import SimpleITK as sitk
    t = json.loads(r.stdout.strip().splitlines()[-1])["time"]
    return t, sitk.GetArrayFromImage(sitk.ReadImage(str(tmp / "nnunet.nii.gz")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=["knee", "small", "ct"])
    ap.add_argument("--ct-scale", type=float, default=1.0, help="shrink every axis of the ct case by this factor")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for torch (salseg and nnU-Net alike)")
    ap.add_argument("--device", default="cpu", help="device of salseg's torch path")
    ap.add_argument("--nnunet-python", default=NNUNET_PYTHON)
    ap.add_argument("--no-scipy", action="store_true", help="skip the old scipy path (it holds K full-size volumes)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"export benchmark: {args.threads} CPU thread(s), torch path on {args.device}, median of {args.repeats}; "
          f"on a shared machine times vary by ~10 %")
    for name in args.cases:
        probs, props, desc = make_case(name, args.ct_scale)
        print(f"\n{desc}" + (f" (ct-scale {args.ct_scale})" if name == "ct" and args.ct_scale != 1 else ""))
        with tempfile.TemporaryDirectory() as td:
            tmp = Path(td)
            ts, ls = (None, None) if args.no_scipy else time_salseg(probs, props, "scipy", tmp / "scipy.nii.gz",
                                                                    args.repeats, args.device)
            tt, lt = time_salseg(probs, props, "torch", tmp / "torch.nii.gz", args.repeats, args.device)
            nn = time_nnunet(args.nnunet_python, probs, props, tmp, args.repeats, args.threads)
        if ts is None:
            print(f"  {'salseg scipy (old)':22s}  skipped (--no-scipy)")
            ts = float("nan")
        else:
            print(f"  {'salseg scipy (old)':22s} {ts:8.2f} s")
        same = "" if ls is None else f"; labels equal on {100 * (ls == lt).mean():.3f} %"
        print(f"  {'salseg torch':22s} {tt:8.2f} s   {ts / tt:5.2f}x faster than scipy{same}")
        if isinstance(nn, str):
            print(f"  {nn}")
        else:
            tn, ln = nn
            print(f"  {'nnU-Net ' + _nnunet_version(args.nnunet_python):22s} {tn:8.2f} s   torch path "
                  f"{tn / tt:5.2f}x faster than nnU-Net, scipy path {tn / ts:5.2f}x; labels equal to torch on "
                  f"{100 * (ln == lt).mean():.3f} %")
        sys.stdout.flush()


def _nnunet_version(python: str) -> str:
    r = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('nnunetv2'))"],
                       capture_output=True, text=True)
    return r.stdout.strip() or "?"


if __name__ == "__main__":
    main()
