"""More synthetic datasets beside the cardiac default: BraTS-like regions and sparse (partly annotated) labels.

``brats``: four MRI-like channels (T1, T1ce, T2, FLAIR) of a small brain with one tumour made of nested structures:
edema (1) around a tumour core of necrosis (2) inside an enhancing rim (3). Labelled as nnU-Net's BraTS regions
(whole tumour = 1, 2, 3; tumour core = 2, 3; enhancing tumour = 3; ``regions_class_order`` [1, 2, 3]); each region is
visible in its own channel (FLAIR: whole tumour, T2 dark core, T1ce: enhancing rim), so a network must combine them.
``brats-labels`` writes the same images with the three values as plain classes (to compare regions with labels).

``sparse``: the cardiac dataset (salseg.synthetic) with an ``ignore`` label (4) over every slice but every third one
(the slices an annotator would have drawn); ``imagesTs``/``labelsTs`` hold fully labelled held-out cases, to score a
model trained on sparse labels against dense references.

A case's random numbers depend only on the seed and its index (same seed -> identical files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from scipy.ndimage import gaussian_filter

from salseg.errors import SalsegError
from salseg.synthetic import DEFAULT_NAME, LABELS, generate_synthetic, preferred_dataset_id, synth_patient

KINDS = ("acdc", "brats", "brats-labels", "sparse")
DEFAULT_NAMES = {"acdc": DEFAULT_NAME, "brats": "SynthBraTS", "brats-labels": "SynthBraTSLabels",
                 "sparse": "SynthSparse"}
DEFAULT_IDS = {"SynthBraTS": 902, "SynthBraTSLabels": 903, "SynthSparse": 904}
BRATS_CHANNELS = {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}
BRATS_REGIONS = {"background": 0, "whole tumour": [1, 2, 3], "tumour core": [2, 3], "enhancing tumour": [3]}
BRATS_CLASS_ORDER = [1, 2, 3]
BRATS_LABELS = {"background": 0, "edema": 1, "necrosis": 2, "enhancing tumour": 3}
SPARSE_IGNORE = 4
SPARSE_EVERY = 3
# tissue -> intensity per channel (T1, T1ce, T2, FLAIR): air, brain, CSF, edema, necrosis, enhancing rim
_TISSUE = np.array([[0.02, 0.02, 0.02, 0.02],
                    [0.62, 0.60, 0.45, 0.50],
                    [0.22, 0.22, 1.00, 0.15],
                    [0.48, 0.50, 0.80, 0.95],
                    [0.30, 0.32, 0.92, 0.62],
                    [0.52, 1.00, 0.62, 0.78]], np.float32)


def _ellipsoid(Z, Y, X, centre, radii) -> np.ndarray:
    return ((Z - centre[0]) / radii[0]) ** 2 + ((Y - centre[1]) / radii[1]) ** 2 + ((X - centre[2]) / radii[2]) ** 2 <= 1


def brats_case(seed: int, index: int) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """(image float32 (4, Z, Y, X), label uint8 (Z, Y, X) with values 0..3, spacing zyx) of case ``index``."""
    rng = np.random.default_rng([seed, 25, index])
    shape = (int(rng.integers(24, 33)), int(rng.integers(40, 57)), int(rng.integers(40, 57)))
    spacing = (float(rng.uniform(1.0, 1.5)), 1.0, 1.0)
    Z, Y, X = np.meshgrid(*[(np.arange(n, dtype=np.float32) - n / 2) * s for n, s in zip(shape, spacing)],
                          indexing="ij")
    half = np.array([n * s / 2 for n, s in zip(shape, spacing)], np.float32)
    brain = _ellipsoid(Z, Y, X, (0, 0, 0), half * rng.uniform(0.78, 0.9, 3))
    tissue = np.where(brain, 1, 0).astype(np.int8)
    for side in (-1, 1):                                               # ventricles: CSF either side of the midline
        tissue[_ellipsoid(Z, Y, X, (0, -2.0, side * 4.5), half * np.array([0.25, 0.3, 0.08])) & brain] = 2
    centre = rng.uniform(-0.35, 0.35, 3) * half
    axes = float(rng.uniform(8.0, 12.0)) * rng.uniform(0.8, 1.2, 3)
    wt = _ellipsoid(Z, Y, X, centre, axes) | _ellipsoid(Z, Y, X, centre + rng.normal(0, 2.5, 3), axes * 0.8)
    c_core, r_core = centre + rng.normal(0, 1.0, 3), axes * rng.uniform(0.55, 0.7)
    tc = _ellipsoid(Z, Y, X, c_core, r_core) & wt
    necrosis = _ellipsoid(Z, Y, X, c_core, np.maximum(r_core - rng.uniform(1.6, 2.6), 0.5))
    et = tc & ~necrosis
    wt, tc, et = wt & brain, tc & brain, et & brain
    label = np.zeros(shape, np.uint8)
    label[wt], label[tc], label[et] = 1, 2, 3
    tissue[wt] = 3
    tissue[tc & ~et] = 4
    tissue[et] = 5
    img = np.moveaxis(_TISSUE[tissue] * rng.uniform(0.9, 1.1, 4).astype(np.float32), -1, 0)
    for c in range(4):                                                 # texture, blur, bias, noise, gain per channel
        img[c] += brain * gaussian_filter(rng.normal(0, 0.06, shape).astype(np.float32), 1.5)
        img[c] = gaussian_filter(img[c], 0.7)
        zn, yn, xn = Z / half[0], Y / half[1], X / half[2]
        a = rng.normal(0, 0.2, 3)
        img[c] *= np.exp(a[0] * xn + a[1] * yn + a[2] * zn * 0.5)
        img[c] = np.abs(img[c] + rng.normal(0, 0.05, shape).astype(np.float32)) * rng.uniform(400, 1200)
    return img.astype(np.float32), label, spacing


def _write(w, case_id: str, channels: list[np.ndarray], label: np.ndarray | None, spacing, origin, *,
           test: bool = False, group: str | None = None) -> None:
    from salseg.convert.common import array_image

    ims = [array_image(np.round(ch).astype(np.int16), spacing, origin) for ch in channels]
    w.add_case(case_id, ims, None if label is None else array_image(label, spacing, origin), group=group, test=test)


def generate_brats(root: str | Path, name: str, cases: int, seed: int, dataset_id: int | None, regions: bool,
                   progress: Callable[[str, int, int], None] | None = None, overwrite: bool = True) -> Path:
    """``cases`` BraTS-like cases, labelled as regions (``regions``) or as plain classes; returns the folder."""
    from salseg.convert.common import DatasetWriter

    did = preferred_dataset_id(Path(root), name, dataset_id, DEFAULT_IDS.get(name))
    with DatasetWriter(root, name, did, overwrite=overwrite, explicit_id=dataset_id is not None) as w:
        for i in range(cases):
            img, lab, spacing = brats_case(seed, i)
            _write(w, f"brats_{i + 1:03d}", list(img), lab, spacing, (0.0, 0.0, 0.0))
            if progress:
                progress("synthesising cases", i + 1, cases)
        extra = {"synthetic": {"seed": seed, "cases": cases, "generator": "salseg.synthetic_kinds", "kind":
                               "brats" if regions else "brats-labels"}}
        if regions:
            extra["regions_class_order"] = list(BRATS_CLASS_ORDER)
        return w.finish(dict(BRATS_CHANNELS), dict(BRATS_REGIONS if regions else BRATS_LABELS),
                        description=f"salseg synthetic BraTS-like MRI (seed {seed}, {cases} cases, "
                                    f"{'regions' if regions else 'labels'})", extra=extra)


def sparsify(label: np.ndarray, ignore: int = SPARSE_IGNORE, every: int = SPARSE_EVERY, offset: int = 0) -> np.ndarray:
    """``label`` with every slice (axis 0) but every ``every``-th one (from ``offset``) set to ``ignore``."""
    out = np.full_like(label, ignore)
    out[offset % every::every] = label[offset % every::every]
    return out


def generate_sparse(root: str | Path, name: str, cases: int, seed: int, dataset_id: int | None,
                    progress: Callable[[str, int, int], None] | None = None, overwrite: bool = True,
                    test_cases: int = 4) -> Path:
    """Cardiac cases with sparse training labels (ignore = 4) plus ``test_cases`` dense cases in imagesTs/labelsTs."""
    from salseg.convert.common import DatasetWriter

    did = preferred_dataset_id(Path(root), name, dataset_id, DEFAULT_IDS.get(name))
    total, done = cases + test_cases, [0, 0]                        # training, test cases written
    with DatasetWriter(root, name, did, overwrite=overwrite, explicit_id=dataset_id is not None) as w:
        i = 0
        while done[0] < cases or done[1] < test_cases:                 # test patients follow the training ones
            pid, test = f"patient{i + 1:03d}", done[0] >= cases
            for j, (frame, img, lab, geom) in enumerate(synth_patient(seed, i)):
                if done[test] >= (test_cases if test else cases):
                    break
                _write(w, f"{pid}_{frame}", [img], lab if test else sparsify(lab, offset=i + j),
                       geom["spacing_zyx"], geom["origin"], test=test, group=pid)
                done[test] += 1
                if progress:
                    progress("synthesising cases", sum(done), total)
            i += 1
        return w.finish({"0": "cineMRI"}, {**LABELS, "ignore": SPARSE_IGNORE},
                        description=f"salseg synthetic cardiac MRI, training labels on every {SPARSE_EVERY}rd slice "
                                    f"(ignore {SPARSE_IGNORE} elsewhere); dense test labels (seed {seed})",
                        extra={"synthetic": {"seed": seed, "cases": cases, "test_cases": test_cases,
                                             "generator": "salseg.synthetic_kinds", "kind": "sparse"}})


def generate(root: str | Path, kind: str = "acdc", name: str | None = None, cases: int = 20, seed: int = 0,
             dataset_id: int | None = None, progress: Callable[[str, int, int], None] | None = None,
             overwrite: bool = True) -> Path:
    """Write the synthetic dataset of ``kind`` (one of :data:`KINDS`); returns its raw folder."""
    if kind not in KINDS:
        raise SalsegError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if cases < 1:
        raise SalsegError(f"--cases must be at least 1, got {cases}")
    name = name or DEFAULT_NAMES[kind]
    if kind == "acdc":
        return generate_synthetic(root, name=name, cases=cases, seed=seed, dataset_id=dataset_id, progress=progress,
                                  overwrite=overwrite)
    if kind == "sparse":
        return generate_sparse(root, name, cases, seed, dataset_id, progress, overwrite)
    return generate_brats(root, name, cases, seed, dataset_id, kind == "brats", progress, overwrite)
