"""CPU prediction speed: salseg torch vs salseg ONNX Runtime (vs nnU-Net, optional) on one knee volume.

    python benchmarks/predict_speed.py [--configs 2d 3d_fullres] [--repeats 2] [--case Case1] [--threads 2]
        [--crop Z Y X] [--work DIR] [--nnunet-python /work/nnunet_venv/bin/python] [--nnunet-cmd "..."]

The knee MRI of ../shared/data/knee is imported (`convert folder`) and planned; per configuration the planned
`unet` (salseg's unet is nnU-Net's PlainConvUNet topology: the plans' features, kernels and strides) is built with
seeded random weights (speed does not depend on the values), packaged with `export-model --onnx`, and one case is
predicted with mirroring on:

- **whole process**: `python -m salseg_cli predict --model PKG -i IN -o OUT` as a subprocess, backend torch and
  onnxruntime, and nnU-Net's `nnUNetv2_predict` on the same network and weights: with nnU-Net installed in its own
  environment (``--nnunet-python``; skipped with a message when absent) ``benchmarks/nnunet_model.py`` runs there
  and builds nnU-Net's trained-model folder (``nnUNet_results/<dataset>/nnUNetTrainer__nnUNetPlans__<config>``:
  dataset.json, plans.json with salseg's spacing, patch, normalisation and PlainConvUNet topology,
  ``fold_0/checkpoint_final.pth`` with salseg's weights under nnU-Net's key names) and prints how far its logits
  are from salseg's on one random input (at most 1e-4, else the benchmark stops). ``nnUNetv2_predict -d DATASET
  -c CONFIG -f 0 -device cpu -npp 1 -nps 1`` then runs with mirroring on (``--nnunet-cmd`` replaces that command:
  ``{input}``, ``{output}``, ``{config}``, ``{dataset}`` are filled in). Labels are compared with salseg torch's.
  Wall time and CPU time (user + system of the child and its worker processes) per run;
- **per stage**, in this process: read, preprocess, windows (sliding window + mirroring), export (back to the
  original grid, write); nnU-Net's the same way in its own environment (``nnunet_model.py --stages``: SimpleITKIO,
  ``DefaultPreprocessor``, ``predict_logits_from_preprocessed_data``, ``export_prediction_from_logits``).

Runs are interleaved (A, B, C, C, B, A, ...) after one warm-up each; medians are printed with the load average
before and after (the machine is shared: compare ratios, not seconds). Threads: by default each program chooses
(salseg times its first network calls with torch's count and with 1 and keeps the faster, salseg.infer.threads;
ONNX Runtime uses torch's count; nnU-Net uses one per core); ``--threads N`` sets ``OMP_NUM_THREADS=N`` for all
(salseg then uses N). ``--nnunet-threads N`` adds a row: nnU-Net with ``nnUNet_def_n_proc=N``, its own cap on
torch's threads during the sliding window.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KNEE = Path(os.environ.get("SALSEG_SHARED_DATA") or REPO.parent / "shared" / "data") / "knee"
NNUNET_PYTHON = "/work/nnunet_venv/bin/python"
NNUNET_CMD = "{bin}/nnUNetv2_predict -i {input} -o {output} -d {dataset} -c {config} -f 0 -device cpu -npp 1 -nps 1"
sys.path.insert(0, str(REPO))


def prepare(work: Path, configs: list[str], case: str, crop) -> tuple[Path, str, Path]:
    """(root, dataset, input folder): the knee imported and planned; one case (optionally cropped) as input."""
    import numpy as np
    import SimpleITK as sitk

    from salseg.convert.folder import convert_folder
    from salseg.plan import plan_dataset

    if not KNEE.is_dir():
        raise SystemExit(f"knee data not found at {KNEE}")
    root = work / "root"
    ds = convert_folder(KNEE / "Image", KNEE / "Label", root, name="Knee", label_suffix="_label",
                        overwrite=True).name
    plan_dataset(root, ds, configs=configs, seed=0)
    inputs = work / "in"
    inputs.mkdir(parents=True, exist_ok=True)
    img = sitk.ReadImage(str(KNEE / "Image" / f"{case}.nii.gz"))
    if crop:
        arr = sitk.GetArrayFromImage(img)[: crop[0], : crop[1], : crop[2]]
        out = sitk.GetImageFromArray(np.ascontiguousarray(arr))
        out.CopyInformation(img[: crop[2], : crop[1], : crop[0]])
        img = out
    sitk.WriteImage(img, str(inputs / f"{case}_0000.nii.gz"))
    return root, ds, inputs


def make_package(root: Path, ds: str, config: str, work: Path):
    """(package, model): the planned unet of ``config`` with seeded random weights, exported with its ONNX graph."""
    import torch

    from salseg import results
    from salseg.plans import load_plans
    from salseg.run import RunConfig, build_model
    from salseg.run.checkpoint import save_checkpoint
    from salseg.run.package import export_model

    plans = load_plans(root, ds)
    conf = plans.configuration(config).to_dict()
    dim = int(conf["dim"])
    cfg = RunConfig(dataset=ds, network="unet", module="none", config=config, fold=0, configuration=conf,
                    label_values=list(plans.label_values), in_channels=plans.num_channels,
                    num_classes=plans.num_classes, dim=dim, mode="3d" if dim == 3 else "2d", neighbours=1,
                    data_identifier=conf["data_identifier"], file_ending=".nii.gz", epochs=1, iters_per_epoch=1,
                    batch_size=int(conf["batch_size"]), patch_size=list(conf["patch_size"]), lr=0.01,
                    optimizer="sgd", weight_decay=0.0, deep_supervision=False)
    fdir = results.fold_dir(root, ds, "unet", "none", config, 0)
    fdir.mkdir(parents=True, exist_ok=True)
    cfg.save(fdir / results.CONFIG_JSON)
    torch.manual_seed(0)
    model = build_model(cfg)
    save_checkpoint(fdir / results.CHECKPOINT_FINAL, model=model.state_dict())
    pkg = work / f"knee_unet_{config}.zip"
    export_model(root, ds, "unet", "none", config, ["0"], pkg, onnx=True)
    params = sum(p.numel() for p in model.parameters())
    print(f"{config}: unet {params / 1e6:.1f} M parameters, patch {conf['patch_size']}, batch {conf['batch_size']}")
    return pkg, model.eval()


def nnunet_folder(root: Path, ds: str, config: str, model, work: Path, python: str) -> Path:
    """nnU-Net's results folder holding ``model`` (salseg's unet) as a trained nnU-Net model of ``config``, built by
    benchmarks/nnunet_model.py in nnU-Net's environment, which checks the logits against salseg's."""
    import json

    import torch

    from salseg.plans import load_plans

    plans = load_plans(root, ds)
    conf = plans.configuration(config).to_dict()
    tmp = work / f"nnunet_spec_{config}"
    tmp.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, tmp / "weights.pt")
    x = torch.randn([1, plans.num_channels, *conf["patch_size"]], generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        y = model(x)
    torch.save({"x": x, "y": y[0] if isinstance(y, (list, tuple)) else y}, tmp / "check.pt")
    dataset = json.loads((root / "raw" / ds / "dataset.json").read_text())
    spec = {"results": str(work / "nnUNet_results"), "dataset": ds, "config": config, "configuration": conf,
            "channel_names": dataset["channel_names"], "labels": dataset["labels"],
            "file_ending": dataset["file_ending"], "median_spacing": list(plans.original_median_spacing),
            "median_shape": list(plans.original_median_shape),
            "weights": str(tmp / "weights.pt"), "check": str(tmp / "check.pt")}
    (tmp / "spec.json").write_text(json.dumps(spec))
    r = subprocess.run([python, str(REPO / "benchmarks" / "nnunet_model.py"), str(tmp / "spec.json")],
                       capture_output=True, text=True)
    print("  " + (r.stdout.strip() or r.stderr.strip()[-2000:]))
    if r.returncode != 0:
        raise SystemExit(f"nnU-Net's model folder could not be built or does not match salseg's network:\n{r.stderr}")
    return work / "nnUNet_results"


def load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def whole_process(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall s, CPU s of the child) of one run of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def stages(predictor, image: Path, out: Path, keep: dict | None = None) -> dict[str, float]:
    """Seconds per stage of one case in this process (``keep``: receives the probabilities and properties)."""
    from salseg.dataset.io import read_images
    from salseg.infer.export import export_prediction
    from salseg.infer.threads import torch_threads
    from salseg.preprocess import preprocess_case

    t = {}
    t0 = time.perf_counter()
    data, props = read_images([image])
    t["read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pdata, _, properties = preprocess_case(data, props, predictor.plans, predictor.config_name)
    t["preprocess"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    probs, _ = predictor.predict_preprocessed_case(pdata, mirroring=True)
    t["windows"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch_threads(predictor.thread_tuner.export_threads if predictor.thread_tuner else None):  # as salseg predict
        export_prediction(probs, properties, predictor.label_values, out, device=predictor.device,
                          spec=predictor.cfg.labels)
    t["export"] = time.perf_counter() - t0
    if keep is not None:
        keep.update(probs=probs, properties=properties)
    return t


def margins(probs, properties, differ) -> tuple[float, float]:
    """(median top-2 probability margin of salseg at the voxels in ``differ``, the same over all voxels of the
    crop box): how close to a tie the voxels whose label differs were. Needs the preprocessed grid to be the
    cropped original one (no resampling: the knee's 1 mm spacing)."""
    import numpy as np

    box = tuple(slice(a, b) for a, b in properties["crop_bbox"])
    top = np.sort(probs, axis=0)
    margin = top[-1] - top[-2]
    if margin.shape != differ[box].shape:
        return float("nan"), float("nan")
    inside = differ[box]
    return (float(np.median(margin[inside])) if inside.any() else float("nan")), float(np.median(margin))


def interleave(names: list[str], repeats: int):
    """Run orders A B C, C B A, ...: no contestant always goes first."""
    for r in range(repeats):
        yield r, (names if r % 2 == 0 else names[::-1])


def bench_config(config: str, pkg: Path, inputs: Path, work: Path, args, ds: str = "",
                 nnunet_results: Path | None = None) -> None:
    import numpy as np
    import SimpleITK as sitk
    import torch

    from salseg.infer.predictor import Predictor

    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    base = [sys.executable, "-m", "salseg_cli", "predict", "--model", str(pkg), "-i", str(inputs), "--device", "cpu",
            "-q", "--overwrite"]
    contestants = {"salseg torch": base + ["--backend", "torch"],
                   "salseg onnxruntime": base + ["--backend", "onnxruntime"]}
    if nnunet_results is not None or args.nnunet_cmd:
        cmd = args.nnunet_cmd or NNUNET_CMD.replace("{bin}", str(Path(args.nnunet_python).parent))
        contestants["nnU-Net"] = shlex.split(cmd.replace("{config}", config).replace("{dataset}", ds))
        if nnunet_results is not None:
            env.update(nnUNet_results=str(nnunet_results), nnUNet_raw=str(work / "nnUNet_raw"),
                       nnUNet_preprocessed=str(work / "nnUNet_preprocessed"))
        if args.nnunet_threads:
            contestants[f"nnU-Net, {args.nnunet_threads} thread(s)"] = contestants["nnU-Net"]
    outs = {name: work / f"out_{config}_{i}" for i, name in enumerate(contestants)}
    envs = {name: {**env, "nnUNet_def_n_proc": str(args.nnunet_threads)} if name.startswith("nnU-Net,") else env
            for name in contestants}

    def command(name):
        cmd = contestants[name]
        if name.startswith("nnU-Net"):
            return [c.replace("{input}", str(inputs)).replace("{output}", str(outs[name])) for c in cmd]
        return cmd + ["-o", str(outs[name])]

    wall = {n: [] for n in contestants}
    cpu = {n: [] for n in contestants}
    print(f"\n== {config}: whole process (load before {load()})")
    for name in contestants if args.warmup else ():  # warm-up (file cache, imports)
        whole_process(command(name), envs[name])
    for r, order in interleave(list(contestants), args.repeats if args.whole else 0):
        for name in order:
            w, c = whole_process(command(name), envs[name])
            wall[name].append(w)
            cpu[name].append(c)
            print(f"  run {r} {name:20s} wall {w:7.1f} s  cpu {c:7.1f} s  (load {load()})")
    if args.threads:
        torch.set_num_threads(args.threads)
    preds = {"salseg torch": Predictor.from_model(pkg, device="cpu"),
             "salseg onnxruntime": Predictor.from_model(pkg, device="cpu", backend="onnxruntime")}
    image = next(inputs.iterdir())
    per = {n: [] for n in preds}
    for name, p in preds.items() if args.warmup else ():
        stages(p, image, work / f"stage_{config}.nii.gz")  # warm-up
    kept = {}
    for r, order in interleave(list(preds), args.repeats):
        for name in order:
            per[name].append(stages(preds[name], image, work / f"stage_{config}.nii.gz",
                                    kept if name == "salseg torch" else None))
    if nnunet_results is not None and args.repeats:  # nnU-Net's stages in its own process (after salseg's)
        folder = nnunet_results / ds / f"nnUNetTrainer__nnUNetPlans__{config}"
        r = subprocess.run([args.nnunet_python, str(REPO / "benchmarks" / "nnunet_model.py"), "--stages",
                            str(folder), str(image), str(work / f"stage_nnunet_{config}"), str(args.repeats),
                            str(args.warmup)], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"nnU-Net's stages failed:\n{r.stderr[-2000:]}")
        per["nnU-Net"] = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]

    case = next(inputs.iterdir()).name.replace("_0000", "")
    labels = {n: sitk.GetArrayFromImage(sitk.ReadImage(str(outs[n] / case))) for n in contestants
              if (outs[n] / case).is_file()}
    ref = labels.get("salseg torch")
    for n, lab in labels.items():
        if n != "salseg torch":
            differ = lab != ref
            line = (f"  labels {n} vs salseg torch: {'identical' if not differ.any() else 'DIFFER'} "
                    f"({differ.sum()} voxels, {differ.mean() * 100:.4f} % of {differ.size})")
            if differ.any() and kept:
                m_differ, m_all = margins(kept["probs"], kept["properties"], differ)
                line += (f"; salseg's top-2 probability margin there: median {m_differ:.2g} "
                         f"(all voxels: {m_all:.2g})")
            print(line)

    print(f"\n| {config} (load after {load()}) | whole wall s | whole CPU s | read | preprocess | windows | export |")
    print("|---|---|---|---|---|---|---|")
    for name in contestants:
        st = {k: statistics.median(d[k] for d in per[name]) for k in per[next(iter(per))][0]} if per.get(name) else {}
        cells = " | ".join(f"{st[k]:.2f}" if k in st else "-" for k in ("read", "preprocess", "windows", "export"))
        whole = [f"{statistics.median(d[name]):.1f}" if d[name] else "-" for d in (wall, cpu)]
        print(f"| {name} | {whole[0]} | {whole[1]} | {cells} |")
    for ours in ("salseg torch", "salseg onnxruntime"):
        for name in contestants:
            if name.startswith("nnU-Net") and wall[name] and wall[ours]:
                print(f"{ours} faster than {name} (whole process, median): wall "
                      f"{statistics.median(wall[name]) / statistics.median(wall[ours]):.2f}x, CPU time "
                      f"{statistics.median(cpu[name]) / statistics.median(cpu[ours]):.2f}x")
    if wall["salseg torch"] and wall["salseg onnxruntime"]:
        print(f"salseg onnxruntime faster than salseg torch (whole process): wall "
              f"{statistics.median(wall['salseg torch']) / statistics.median(wall['salseg onnxruntime']):.2f}x")
    if per["salseg torch"]:
        w = {n: statistics.median(d["windows"] for d in per[n]) for n in per if per[n]}
        for name in w:
            if name != "salseg torch":
                print(f"windows stage: {name} / salseg torch = {w[name] / w['salseg torch']:.2f}")


def main() -> None:
    import tempfile

    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", nargs="+", default=["2d", "3d_fullres"])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--case", default="Case1")
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for all (default: each chooses)")
    ap.add_argument("--nnunet-threads", type=int, default=None,
                    help="also time nnU-Net with nnUNet_def_n_proc=N (its sliding window's thread cap)")
    ap.add_argument("--crop", type=int, nargs=3, default=None, metavar=("Z", "Y", "X"),
                    help="predict the first Z x Y x X voxels only (a quick run)")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--warmup", type=int, default=1, help="1: one warm-up run each before timing; 0: none")
    ap.add_argument("--no-whole", dest="whole", action="store_false", help="per-stage timings only")
    ap.add_argument("--nnunet-python", default=NNUNET_PYTHON,
                    help="python of nnU-Net's own environment (its model folder is built there); absent: skipped")
    ap.add_argument("--nnunet-cmd", default=None,
                    help="replaces nnUNetv2_predict's command: {input}, {output}, {config}, {dataset} are filled in")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="predict_speed_"))
    print(f"work folder {work}; threads {args.threads or 'chosen by each program'}; {os.cpu_count()} cores; "
          f"load {load()}; torch {torch.__version__}")
    root, ds, inputs = prepare(work, args.configs, args.case, args.crop)
    nnunet = Path(args.nnunet_python).is_file()
    if not nnunet:
        print(f"nnU-Net: not measured ({args.nnunet_python} not found; install nnU-Net v2 in its own environment "
              f"and pass its python with --nnunet-python)")
    for config in args.configs:
        pkg, model = make_package(root, ds, config, work)
        results = nnunet_folder(root, ds, config, model, work, args.nnunet_python) if nnunet else None
        bench_config(config, pkg, inputs, work, args, ds, results)


if __name__ == "__main__":
    main()
