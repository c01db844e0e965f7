"""salseg's metrics against the reference implementations: agreement (max difference per metric) and speed.

    python benchmarks/metrics.py [--data ../shared/data] [--cases 3] [--mesh-cases 1] [--no-mesh]
    python benchmarks/metrics.py --speed-only [--cases 3] [--repeats 3] [--cpu-time]   # timings of `evaluate`

Volumes: the synthetic abdomen (each case a 160 x 160 x 100 (x, y, z) label map with four organ-like structures at
0.78 x 0.78 x 2.5 mm; the prediction is the reference with a displaced, noisy boundary: the medpy comparison
volumes of earlier versions), the knee MRI (5 cases, femur + tibia, 1 mm), the spine CT (vertebrae 21-23) and MRI
(vertebrae and discs, 8 labels) at 1.5 mm, whose predictions are their references with a boundary moved by a smooth
random field (SD 1.5 mm), and the GlaS gland instance maps (2D), whose predictions move, grow, shrink, drop and add
glands. Data from ``../shared/data`` (see its README); the datasets that are absent are skipped with a message.

References (each only if installed): medpy (``dc``, ``hd``, ``hd95``, ``assd``, ``precision``, ``recall``,
``ravd``: voxel surfaces, the same definitions, so differences are rounding), panoptica (its global binary HD,
HD95, "ASSD" (which is the mean of the two directed means, i.e. MASD, and compared as such), RVD, clDice and its
instance matching: F1 (rq), PQ, matched Dice (sq_dsc)) and pymeshmetrics (the
mesh-based reference of Podobnik & Vrtovec: HD, HD95 as the maximum of the directed percentiles, MASD, ASSD, NSD,
boundary IoU, on surface meshes, so differences are by design; slow, hence only ``--mesh-cases`` cases per
dataset). Metrics Reloaded itself (Project-MONAI/MetricsReloaded) is not on the package registry; its definitions
are checked against its formulas in tests/evaluate/test_eval_reloaded.py.

Prints, per reference and metric, the number of compared values, the largest absolute difference and the largest
difference relative to the reference value, and per reference the time ratio (reference time / salseg time for
the same metrics). ``--speed-only`` prints the time of what ``salseg evaluate`` computes per case (the default
metrics, all labels) on the synthetic abdomen: run it with PYTHONPATH pointing at two checkouts to compare them.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import ndimage

# (centre as a fraction of the (z, y, x) shape, semi-axes in mm) of the organ-like structures
ORGANS = {
    1: ((0.5, 0.45, 0.30), (70.0, 55.0, 45.0)),   # liver-sized
    2: ((0.55, 0.60, 0.72), (45.0, 28.0, 25.0)),  # spleen-sized
    3: ((0.45, 0.70, 0.40), (45.0, 22.0, 20.0)),  # kidney-sized
    4: ((0.45, 0.70, 0.62), (45.0, 22.0, 20.0)),  # kidney-sized
}
SHAPE, SPACING = (100, 160, 160), (2.5, 0.78, 0.78)
NSD_TOL, WIDTH = 1.0, 2.0


def make_case(shape, spacing, rng) -> tuple[np.ndarray, np.ndarray]:
    """(reference, prediction) label maps of one synthetic abdomen."""
    grids = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    ref = np.zeros(shape, np.uint8)
    pred = np.zeros(shape, np.uint8)
    # smooth random field that deforms the boundaries (in units of the ellipsoid radius)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=(2, 6, 6))
    noise /= np.abs(noise).max()
    for label, (centre, axes) in ORGANS.items():
        c = [f * n * s for f, n, s in zip(centre, shape, spacing)]
        r2 = sum(((g - ci) / a) ** 2 for g, ci, a in zip(grids, c, axes))
        ref[(r2 + 0.15 * noise) <= 1.0] = label
        shift = rng.normal(0, 0.04, 3)
        r2p = sum(((g - ci - sh * a) / a) ** 2 for g, ci, a, sh in zip(grids, c, axes, shift))
        pred[(r2p - 0.25 * noise + 0.05 * rng.standard_normal(shape)) <= 1.0] = label
    return ref, pred


def perturb(ref: np.ndarray, spacing, rng, amp_mm: float = 1.5) -> np.ndarray:
    """A prediction: every label's boundary moved by a smooth random field of SD ``amp_mm`` (signed distance)."""
    pred = np.zeros_like(ref)
    for v in [int(v) for v in np.unique(ref) if v != 0]:
        m = ref == v
        pad = int(math.ceil(amp_mm / min(spacing))) + 2
        box = tuple(slice(max(0, s.start - pad), s.stop + pad) for s in ndimage.find_objects(m.astype(np.uint8))[0])
        mb = m[box]
        sd = (ndimage.distance_transform_edt(~mb, sampling=spacing)
              - ndimage.distance_transform_edt(mb, sampling=spacing))
        noise = ndimage.gaussian_filter(rng.standard_normal(mb.shape), sigma=4)
        noise *= amp_mm / max(float(noise.std()), 1e-9)
        view = pred[box]
        view[(sd + noise <= 0) & (view == 0)] = v
    return pred


def _read(path: Path) -> tuple[np.ndarray, tuple]:
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(img), tuple(reversed(img.GetSpacing()))


def volumes(data: Path, n_synthetic: int, rng):
    """(dataset, case, reference, prediction, spacing (z, y, x)) of every 3D volume."""
    for i in range(n_synthetic):
        ref, pred = make_case(SHAPE, SPACING, rng)
        yield "synthetic", f"abdomen{i}", ref, pred, SPACING
    knee = sorted((data / "knee" / "Label").glob("*_label.nii.gz"))
    spine = sorted((data / "spine").rglob("*seg-vert*msk.nii.gz"))
    if not knee or not spine:
        print(f"note: {data}/knee or {data}/spine not found; those datasets are skipped")
    for path in knee + spine:
        ref, sp = _read(path)
        ref = ref.astype(np.int16)
        yield ("knee" if path in knee else "spine"), path.name.split("_")[0], ref, perturb(ref, sp, rng), sp


def glas_cases(data: Path, rng):
    """(case, reference instance map, predicted instance map) of the GlaS labels."""
    from PIL import Image

    for path in sorted((data / "glas" / "Label").glob("*_label.bmp")):
        ref = np.asarray(Image.open(path)).astype(np.int32)
        ref = ref[..., 0] if ref.ndim == 3 else ref
        pred = np.zeros_like(ref)
        for i in [int(v) for v in np.unique(ref) if v != 0]:
            if rng.random() < 0.1:
                continue                                   # a missed gland
            m = np.roll(ref == i, tuple(rng.integers(-4, 5, 2)), axis=(0, 1))
            m = [ndimage.binary_erosion, ndimage.binary_dilation][int(rng.integers(2))](m, iterations=3)
            pred[m & (pred == 0)] = i + 1000
        for k in range(2):                                 # spurious glands
            y, x = rng.integers(10, np.array(ref.shape) - 30)
            pred[y:y + 20, x:x + 25] = 5000 + k
        yield path.name.split("_")[0], ref, pred


DATASETS = ("synthetic", "knee", "spine", "glas")


class Tally:
    def __init__(self):
        self.diff = defaultdict(lambda: defaultdict(list))   # (reference, key) -> dataset -> [abs diff]
        self.value = defaultdict(list)                       # (reference, key) -> [reference value]
        self.time = defaultdict(lambda: [0.0, 0.0])   # reference -> [reference s, salseg s]
        self.dataset = ""

    def add(self, ref_name: str, key: str, ours: float, theirs: float):
        if not (math.isfinite(ours) and math.isfinite(theirs)):
            return
        self.diff[(ref_name, key)][self.dataset].append(abs(ours - theirs))
        self.value[(ref_name, key)].append(abs(theirs))

    def print(self):
        cols = [d for d in DATASETS if any(d in v for v in self.diff.values())]
        print("max |salseg - reference| per dataset (mm for distances), n values compared, median |reference value|")
        print(f"{'reference':<22} {'metric':<12}" + "".join(f"{d:>11}" for d in cols) + f"{'n':>6}{'median ref':>12}")
        for (name, key), per in sorted(self.diff.items()):
            cells = "".join(f"{max(per[d]):>11.3g}" if d in per else f"{'-':>11}" for d in cols)
            n = sum(len(v) for v in per.values())
            print(f"{name:<22} {key:<12}{cells}{n:>6}{float(np.median(self.value[(name, key)])):>12.3g}")
        print()
        print(f"{'reference':<22} {'reference s':>12} {'salseg s':>10} {'ratio':>8}")
        for name, (t_ref, t_ours) in sorted(self.time.items()):
            print(f"{name:<22} {t_ref:>12.2f} {t_ours:>10.2f} {t_ref / t_ours:>7.1f}x")

    def timed(self, ref_name: str, which: int, fn, *args, **kw):
        t0 = time.perf_counter()
        out = fn(*args, **kw)
        self.time[ref_name][which] += time.perf_counter() - t0
        return out


def _ours(tally, name, p, r, sp, metrics, **kw):
    from salseg.evaluate.metrics import binary_metrics

    return tally.timed(name, 1, binary_metrics, p, r, sp, metrics=metrics, **kw)


def compare_medpy(tally, p, r, sp):
    from medpy.metric import binary as mb

    funcs = {"Dice": lambda: mb.dc(p, r), "HD": lambda: mb.hd(p, r, voxelspacing=sp),
             "HD95": lambda: mb.hd95(p, r, voxelspacing=sp), "ASSD": lambda: mb.assd(p, r, voxelspacing=sp),
             "Precision": lambda: mb.precision(p, r), "Recall": lambda: mb.recall(p, r), "RVD": lambda: mb.ravd(p, r)}
    theirs = {k: tally.timed("medpy", 0, f) for k, f in funcs.items()}
    ours = _ours(tally, "medpy", p, r, sp, ["dice", "hd", "hd95", "hd95_mr", "assd", "precision", "recall", "rvd"])
    for k, v in theirs.items():
        tally.add("medpy", k, ours[k], float(v))
    tally.add("salseg HD95 (pooled)", "HD95_MR", ours["HD95_MR"], ours["HD95"])   # the two definitions


def compare_panoptica(tally, p, r, sp):
    from panoptica.metrics import assd, cldice, hausdorff_distance as hd, relative_volume_difference as rvd

    funcs = {"HD": lambda: hd._compute_hausdorff_distance(r, p, voxelspacing=sp),
             "HD95": lambda: hd._compute_hausdorff_distance95(r, p, voxelspacing=sp),
             # panoptica's "ASSD" is the mean of the two directed means: Metrics Reloaded's MASD
             "MASD": lambda: assd._average_symmetric_surface_distance(r, p, voxelspacing=sp),
             "RVD": lambda: rvd._compute_relative_volume_difference(r, p),
             "clDice": lambda: cldice._compute_centerline_dice_coefficient(r, p)}
    theirs = {k: tally.timed("panoptica", 0, f) for k, f in funcs.items()}
    ours = _ours(tally, "panoptica", p, r, sp, ["hd", "hd95", "masd", "rvd", "cldice"])
    for k, v in theirs.items():
        tally.add("panoptica", k, ours[k], float(v))


def compare_mesh(tally, p, r, sp):
    from meshmetrics import DistanceMetrics

    def run():
        dm = DistanceMetrics(verbose=False)
        dm.set_input(r, p, spacing=tuple(float(s) for s in sp))
        return {"HD": dm.hd(), "HD95_MR": dm.hd(95), "MASD": dm.masd(), "ASSD": dm.assd(), "NSD": dm.nsd(NSD_TOL),
                "BoundaryIoU": dm.biou(WIDTH)}

    theirs = tally.timed("pymeshmetrics", 0, run)
    ours = _ours(tally, "pymeshmetrics", p, r, sp, ["hd", "hd95_mr", "masd", "assd", "nsd", "boundary_iou"],
                 nsd_tolerance=NSD_TOL, boundary_width=WIDTH)
    for k, v in theirs.items():
        tally.add("pymeshmetrics", k, ours[k], float(v))


def compare_instances(tally, case, ref, pred):
    from panoptica import InputType, NaiveThresholdMatching, Panoptica_Evaluator

    from salseg.evaluate import evaluate_arrays

    ev = Panoptica_Evaluator(expected_input=InputType.UNMATCHED_INSTANCE,
                             instance_matcher=NaiveThresholdMatching(matching_threshold=0.5), verbose=False)
    res = tally.timed("panoptica (instances)", 0, ev.evaluate, pred, ref, verbose=False)["ungrouped"]
    s = tally.timed("panoptica (instances)", 1, evaluate_arrays, [(case, pred, ref, (1.0, 1.0))],
                    metrics=["f1", "pq", "matched_dice"], instance_maps=True)
    m = s["metric_per_case"][0]["metrics"]["1"]
    for key, theirs in (("TP_inst", res.tp), ("FP_inst", res.fp), ("FN_inst", res.fn), ("F1", res.rq),
                        ("PQ", res.pq), ("MatchedDice", res.sq_dsc)):
        tally.add("panoptica (instances)", key, float(m[key]), float(theirs))


def _available(module: str) -> bool:
    try:
        __import__(module)
        return True
    except Exception as e:  # noqa: BLE001 (a reference that does not import is skipped, with the reason)
        print(f"note: {module} not available ({type(e).__name__}: {e}); skipped")
        return False


def _shared_data() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "shared" / "data").is_dir():
            return parent / "shared" / "data"
    return here.parents[1].parent / "shared" / "data"


def speed(n_cases: int, repeats: int, seed: int, clock=time.perf_counter) -> tuple[float, float]:
    """Seconds per case of what `salseg evaluate` computes (default metrics, all labels) on the abdomen volumes:
    the metrics alone (``label_metrics``), and ``evaluate_folders`` on the cases written as .nii.gz (reading,
    metrics, summary.json); best of ``repeats``. ``clock=time.process_time`` measures CPU seconds instead (less
    sensitive to other jobs on a shared machine)."""
    import tempfile

    from salseg.dataset.io import write_image
    from salseg.evaluate import evaluate_folders
    from salseg.evaluate.metrics import label_metrics

    rng = np.random.default_rng(seed)
    cases = [make_case(SHAPE, SPACING, rng) for _ in range(n_cases)]
    props = {"spacing": list(SPACING), "origin": [0.0] * 3, "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1], "ndim": 3}
    best = [math.inf, math.inf]
    with tempfile.TemporaryDirectory() as tmp:
        pred_dir, ref_dir = Path(tmp) / "pred", Path(tmp) / "ref"
        for i, (ref, pred) in enumerate(cases):
            write_image(pred, props, pred_dir / f"c{i}.nii.gz")
            write_image(ref, props, ref_dir / f"c{i}.nii.gz")
        for _ in range(repeats):
            t0 = clock()
            for ref, pred in cases:
                label_metrics(pred, ref, list(ORGANS), SPACING)
            t1 = clock()
            evaluate_folders(pred_dir, ref_dir, labels=list(ORGANS), output=Path(tmp) / "out" / "summary.json")
            t2 = clock()
            best = [min(best[0], (t1 - t0) / n_cases), min(best[1], (t2 - t1) / n_cases)]
    return best[0], best[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=_shared_data(), help="default: the nearest shared/data folder "
                    "above this script (../shared/data from the repository root)")
    ap.add_argument("--cases", type=int, default=3, help="synthetic abdomen cases")
    ap.add_argument("--mesh-cases", type=int, default=1, help="cases per dataset compared with pymeshmetrics")
    ap.add_argument("--no-mesh", action="store_true", help="skip pymeshmetrics (minutes per knee case)")
    ap.add_argument("--speed-only", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cpu-time", action="store_true", help="--speed-only: CPU seconds instead of wall-clock")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    if args.speed_only:
        import salseg.evaluate.metrics as m

        clock = time.process_time if args.cpu_time else time.perf_counter
        t, t_files = speed(args.cases, args.repeats, args.seed, clock)
        print(f"{m.__file__}: default metrics, {len(ORGANS)} labels, {SHAPE} at {SPACING} mm, best of "
              f"{args.repeats}, {'CPU' if args.cpu_time else 'wall'} time: metrics {t:.3f} s per case, "
              f"evaluate_folders {t_files:.3f} s per case")
        return
    rng = np.random.default_rng(args.seed)
    tally = Tally()
    refs = [n for n in ("medpy", "panoptica", "meshmetrics") if _available(n)]
    if args.no_mesh and "meshmetrics" in refs:
        refs.remove("meshmetrics")
    mesh_done = defaultdict(int)
    for dataset, case, ref, pred, sp in volumes(args.data, args.cases, rng):
        tally.dataset = dataset
        labels = [int(v) for v in np.unique(ref) if v != 0]
        mesh = "meshmetrics" in refs and mesh_done[dataset] < args.mesh_cases
        mesh_done[dataset] += 1
        print(f"{dataset} {case}: shape {ref.shape}, spacing {tuple(round(float(s), 3) for s in sp)}, labels {labels}"
              + (" (+ pymeshmetrics)" if mesh else ""), flush=True)
        for v in labels:
            p, r = pred == v, ref == v
            if "medpy" in refs:
                compare_medpy(tally, p, r, sp)
            if "panoptica" in refs:
                compare_panoptica(tally, p, r, sp)
            if mesh:
                compare_mesh(tally, p, r, sp)
    if "panoptica" in refs:
        tally.dataset = "glas"
        for case, ref, pred in glas_cases(args.data, rng):
            print(f"glas {case}: {len(np.unique(ref)) - 1} reference glands, instance maps", flush=True)
            compare_instances(tally, case, ref, pred)
    print()
    tally.print()


if __name__ == "__main__":
    main()
