"""HD95 / ASSD speed and agreement: salseg.evaluate.metrics against medpy on 3D organ-sized masks.

    /work/venv/bin/python benchmarks/metrics.py [--shape 100 160 160] [--spacing 2.5 0.78 0.78] [--cases 3]

Each case is a 160 x 160 x 100 (x, y, z) label map with four organ-like structures (liver-, kidney-, spleen-sized
smooth blobs); the prediction is the reference with a displaced, noisy boundary (a typical network error). For
every case and label, medpy's ``hd95`` and ``assd`` (with ``voxelspacing``) are timed against one salseg call that
returns both. Prints both times, the ratio and the largest absolute difference in mm.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage

# (centre as a fraction of the (z, y, x) shape, semi-axes in mm) of the organ-like structures
ORGANS = {
    1: ((0.5, 0.45, 0.30), (70.0, 55.0, 45.0)),   # liver-sized
    2: ((0.55, 0.60, 0.72), (45.0, 28.0, 25.0)),  # spleen-sized
    3: ((0.45, 0.70, 0.40), (45.0, 22.0, 20.0)),  # kidney-sized
    4: ((0.45, 0.70, 0.62), (45.0, 22.0, 20.0)),  # kidney-sized
}


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=int, nargs=3, default=[100, 160, 160], help="(z, y, x)")
    ap.add_argument("--spacing", type=float, nargs=3, default=[2.5, 0.78, 0.78], help="(z, y, x) in mm")
    ap.add_argument("--cases", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from medpy.metric import binary as medpy_binary

    from salseg.evaluate.metrics import binary_metrics, label_metrics

    rng = np.random.default_rng(args.seed)
    spacing = tuple(args.spacing)
    t_medpy = t_salseg = t_all = 0.0
    max_diff = 0.0
    print(f"shape (z,y,x) {tuple(args.shape)}, spacing {spacing} mm, {args.cases} cases x {len(ORGANS)} labels")
    for case in range(args.cases):
        ref, pred = make_case(tuple(args.shape), spacing, rng)
        for label in ORGANS:
            p, r = pred == label, ref == label
            t0 = time.perf_counter()
            m_hd95 = medpy_binary.hd95(p, r, voxelspacing=spacing)
            m_assd = medpy_binary.assd(p, r, voxelspacing=spacing)
            t1 = time.perf_counter()
            ours = binary_metrics(p, r, spacing, metrics=("hd95", "assd"))
            t2 = time.perf_counter()
            t_medpy += t1 - t0
            t_salseg += t2 - t1
            max_diff = max(max_diff, abs(ours["HD95"] - m_hd95), abs(ours["ASSD"] - m_assd))
            print(f"case {case} label {label}: voxels {int(r.sum()):7d}  HD95 {ours['HD95']:7.3f} mm "
                  f"(medpy {m_hd95:7.3f})  ASSD {ours['ASSD']:6.3f} mm (medpy {m_assd:6.3f})")
        t0 = time.perf_counter()
        label_metrics(pred, ref, list(ORGANS), spacing)  # what `salseg evaluate` runs per case
        t_all += time.perf_counter() - t0
    print(f"medpy  hd95 + assd : {t_medpy:8.3f} s")
    print(f"salseg hd95 + assd : {t_salseg:8.3f} s")
    print(f"speed-up           : {t_medpy / t_salseg:8.1f} x")
    print(f"max |difference|   : {max_diff:.3e} mm")
    print(f"salseg all metrics (Dice, IoU, counts, HD95, ASSD, NSD) per case, all labels: "
          f"{t_all / args.cases:.3f} s")


if __name__ == "__main__":
    main()
