"""Metrics against medpy (dc, hd95, assd with voxelspacing), the empty rules, and NSD against brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import ndimage

from salseg.evaluate.metrics import binary_metrics, label_metrics

medpy_binary = pytest.importorskip("medpy.metric.binary")


def _blobs(rng, shape, p):
    """Random smooth-ish masks (several components, some touching the array border)."""
    m = ndimage.gaussian_filter(rng.random(shape), 1.0) > p
    return m


def _medpy(p, r, sp):
    return (medpy_binary.dc(p, r), medpy_binary.hd95(p, r, voxelspacing=sp), medpy_binary.assd(p, r, voxelspacing=sp))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("shape", [(31, 27), (12, 17, 15)])
def test_equals_medpy_random_masks_anisotropic(seed, shape):
    rng = np.random.default_rng(seed)
    sp = tuple(rng.uniform(0.3, 3.0, len(shape)))
    p, r = _blobs(rng, shape, 0.5), _blobs(rng, shape, 0.52)
    assert p.any() and r.any()
    ours = binary_metrics(p, r, sp)
    dc, h, a = _medpy(p, r, sp)
    assert ours["Dice"] == pytest.approx(dc, rel=1e-9)
    assert ours["HD95"] == pytest.approx(h, rel=1e-9)
    assert ours["ASSD"] == pytest.approx(a, rel=1e-9)


def test_equals_medpy_small_objects_far_apart_and_border():
    """Boxes are exact: objects in opposite corners, one touching the border (cropping must not change results)."""
    p = np.zeros((10, 30, 40), bool)
    r = np.zeros_like(p)
    p[0:3, 0:4, 0:5] = True          # touches three faces of the volume
    r[6:9, 20:27, 30:38] = True
    r[7, 23, 33] = False             # a hole: an inner surface voxel
    sp = (3.0, 0.7, 1.3)
    ours = binary_metrics(p, r, sp)
    dc, h, a = _medpy(p, r, sp)
    assert ours["Dice"] == dc == 0.0
    assert ours["HD95"] == pytest.approx(h, rel=1e-12)
    assert ours["ASSD"] == pytest.approx(a, rel=1e-12)


def test_label_maps_per_label_equal_medpy_and_counts():
    rng = np.random.default_rng(7)
    shape = (9, 21, 19)
    ref = (ndimage.gaussian_filter(rng.random(shape), 1.2) * 30).astype(np.int16) % 4
    pred = np.roll(ref, 1, axis=2)
    pred[0] = 0
    sp = (2.5, 0.8, 0.6)
    res = label_metrics(pred, ref, [1, 2, 3], sp)
    for v in (1, 2, 3):
        p, r = pred == v, ref == v
        m = res[v]
        tp = int((p & r).sum())
        assert (m["TP"], m["FP"], m["FN"], m["TN"]) == (tp, int((p & ~r).sum()), int((~p & r).sum()),
                                                       int((~p & ~r).sum()))
        assert (m["n_pred"], m["n_ref"]) == (int(p.sum()), int(r.sum()))
        assert m["IoU"] == pytest.approx(tp / int((p | r).sum()))
        dc, h, a = _medpy(p, r, sp)
        assert m["Dice"] == pytest.approx(dc, rel=1e-9)
        assert m["HD95"] == pytest.approx(h, rel=1e-9)
        assert m["ASSD"] == pytest.approx(a, rel=1e-9)


def test_2d_stored_as_one_slice_is_evaluated_in_2d():
    rng = np.random.default_rng(3)
    p, r = _blobs(rng, (25, 30), 0.5), _blobs(rng, (25, 30), 0.5)
    ours = binary_metrics(p[None], r[None], (999.0, 0.5, 0.9))
    dc, h, a = _medpy(p, r, (0.5, 0.9))
    assert ours["HD95"] == pytest.approx(h, rel=1e-9) and ours["ASSD"] == pytest.approx(a, rel=1e-9)


def test_empty_rules():
    z = np.zeros((4, 6, 6), bool)
    m = z.copy()
    m[1:3, 2:4, 2:4] = True
    both = binary_metrics(z, z, (1, 1, 1))
    for k in ("Dice", "IoU", "HD95", "ASSD", "NSD"):
        assert math.isnan(both[k]), k
    assert both["TN"] == z.size and both["TP"] == both["FP"] == both["FN"] == 0
    for p, r in ((m, z), (z, m)):
        one = binary_metrics(p, r, (1, 1, 1))
        assert one["Dice"] == 0.0 and one["IoU"] == 0.0 and one["NSD"] == 0.0
        assert math.isnan(one["HD95"]) and math.isnan(one["ASSD"])
    # a label absent from both maps follows the both-empty rule
    res = label_metrics(m.astype(np.uint8), m.astype(np.uint8), [1, 2], (1, 1, 1))
    assert res[1]["Dice"] == 1.0 and res[1]["HD95"] == 0.0 and res[1]["NSD"] == 1.0
    assert math.isnan(res[2]["Dice"]) and res[2]["TN"] == z.size


def _brute_surface(mask):
    """Foreground voxels with a 6-(4-)neighbour that is background or outside the array."""
    pts = []
    for idx in zip(*np.nonzero(mask)):
        for ax, step in itertools.product(range(mask.ndim), (-1, 1)):
            n = list(idx)
            n[ax] += step
            if not (0 <= n[ax] < mask.shape[ax]) or not mask[tuple(n)]:
                pts.append(idx)
                break
    return np.array(pts, float)


def _brute_nsd(p, r, sp, tol):
    sp_ = _brute_surface(p) * sp
    sr_ = _brute_surface(r) * sp
    d = np.sqrt(((sp_[:, None, :] - sr_[None, :, :]) ** 2).sum(-1))
    return ((d.min(1) <= tol).sum() + (d.min(0) <= tol).sum()) / (len(sp_) + len(sr_))


@pytest.mark.parametrize("seed,tol", [(0, 0.9), (1, 1.7), (2, 3.1), (3, 0.25)])
def test_nsd_brute_force(seed, tol):
    rng = np.random.default_rng(seed)
    shape = (5, 9, 8)
    sp = np.array([2.1, 0.7, 1.1])
    p, r = _blobs(rng, shape, 0.5), _blobs(rng, shape, 0.5)
    assert p.any() and r.any()
    assert binary_metrics(p, r, sp, nsd_tolerance=tol)["NSD"] == pytest.approx(_brute_nsd(p, r, sp, tol), rel=1e-12)


def test_unknown_metric_and_shape_mismatch():
    with pytest.raises(ValueError, match="unknown metric"):
        binary_metrics(np.ones((2, 2)), np.ones((2, 2)), metrics=("dice", "hausdorff"))
    with pytest.raises(ValueError, match="shape"):
        binary_metrics(np.ones((2, 3, 3)), np.ones((2, 3, 4)))
