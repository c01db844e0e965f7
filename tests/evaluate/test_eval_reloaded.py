"""The Metrics Reloaded set: HD, HD95 (medpy) and HD95_MR, MASD, precision, recall, RVD, boundary IoU, clDice and
per-label NSD tolerances, each against medpy or a direct computation on constructed masks (a ring, a line, two
blobs, empty cases, anisotropic spacing); the definitions recorded in summary.json."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import skeletonize

from salseg.evaluate import evaluate_arrays, parse_tolerance
from salseg.evaluate.metrics import binary_metrics, label_metrics

medpy_binary = pytest.importorskip("medpy.metric.binary")


def _ring(shape, centre, r_in, r_out):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    d = np.hypot(yy - centre[0], xx - centre[1])
    return (d >= r_in) & (d <= r_out)


def _two_blobs(shape, shift=0):
    m = np.zeros(shape, bool)
    m[2:6, 3 + shift:9 + shift, 2:7] = True
    m[5:9, 12:17, 10 + shift:15 + shift] = True
    return m


def _surface_points(mask, sp):
    surf = mask ^ ndimage.binary_erosion(mask, ndimage.generate_binary_structure(mask.ndim, 1))
    return np.argwhere(surf) * np.asarray(sp)


def _directed(p, r, sp):
    """Brute-force directed surface distances (pred -> ref, ref -> pred) by all pairs."""
    a, b = _surface_points(p, sp), _surface_points(r, sp)
    d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    return d.min(1), d.min(0)


CASES = {
    "ring": (_ring((40, 44), (20, 21), 8, 12), _ring((40, 44), (21, 20), 7.5, 12.5), (0.7, 1.3)),
    "line": (np.pad(np.ones((1, 30), bool), ((5, 5), (2, 2))), np.pad(np.ones((1, 26), bool), ((6, 4), (4, 4))),
             (1.0, 0.5)),
    "two_blobs": (_two_blobs((10, 20, 18), 1), _two_blobs((10, 20, 18)), (2.5, 0.8, 0.6)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_distance_and_count_metrics_against_medpy_and_brute_force(name):
    p, r, sp = CASES[name]
    m = binary_metrics(p, r, sp, metrics=["all"])
    d_pr, d_rp = _directed(p, r, sp)
    assert m["HD"] == pytest.approx(medpy_binary.hd(p, r, voxelspacing=sp), rel=1e-12)
    assert m["HD"] == pytest.approx(max(d_pr.max(), d_rp.max()), rel=1e-12)
    assert m["HD95"] == pytest.approx(medpy_binary.hd95(p, r, voxelspacing=sp), rel=1e-12)
    assert m["HD95_MR"] == pytest.approx(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95)), rel=1e-12)
    assert m["ASSD"] == pytest.approx(medpy_binary.assd(p, r, voxelspacing=sp), rel=1e-12)
    assert m["MASD"] == pytest.approx((d_pr.mean() + d_rp.mean()) / 2, rel=1e-12)
    assert m["Precision"] == pytest.approx(medpy_binary.precision(p, r), rel=1e-12)
    assert m["Recall"] == pytest.approx(medpy_binary.recall(p, r), rel=1e-12)
    assert m["RVD"] == pytest.approx(medpy_binary.ravd(p, r), rel=1e-12)


def _boundary_region(mask, sp, width):
    surf = mask ^ ndimage.binary_erosion(mask, ndimage.generate_binary_structure(mask.ndim, 1))
    return mask & (ndimage.distance_transform_edt(~surf, sampling=sp) < width)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("width", [0.6, 1.0, 2.5])
def test_boundary_iou_against_direct_computation(name, width):
    p, r, sp = CASES[name]
    bp, br = _boundary_region(p, sp, width), _boundary_region(r, sp, width)
    want = (bp & br).sum() / (bp | br).sum()
    got = binary_metrics(p, r, sp, metrics=["boundary_iou"], boundary_width=width)["BoundaryIoU"]
    assert got == pytest.approx(want, rel=1e-12)


def test_boundary_iou_is_metrics_reloaded_formula_at_unit_spacing():
    """Metrics Reloaded: voxels of the mask whose (voxel) distance to its border map is < d."""
    p, r, _ = CASES["ring"]
    d = 2

    def mr_region(mask):
        border = mask.astype(np.int8) - ndimage.binary_erosion(mask).astype(np.int8)
        return (ndimage.distance_transform_edt(1 - border) < d) & mask

    want = (mr_region(p) & mr_region(r)).sum() / (mr_region(p) | mr_region(r)).sum()
    assert binary_metrics(p, r, (1, 1), metrics=["boundary_iou"], boundary_width=d)["BoundaryIoU"] == \
        pytest.approx(want, rel=1e-12)


def _cldice(p, r):
    sp_, sr_ = skeletonize(p), skeletonize(r)
    tprec, tsens = (sp_ & r).sum() / sp_.sum(), (sr_ & p).sum() / sr_.sum()
    return 2 * tprec * tsens / (tprec + tsens) if tprec + tsens else 0.0   # disjoint: 0 (salseg's convention)


def test_cldice_against_skimage_skeletons():
    # a 3D tube and a thinner, shorter, shifted tube; the 2D ring and the line
    z, y, x = np.mgrid[:12, :20, :40]
    tube = ((z - 6) ** 2 + (y - 10) ** 2 <= 9) & (x > 2) & (x < 37)
    thin = ((z - 6) ** 2 + (y - 11) ** 2 <= 3) & (x > 6) & (x < 30)
    line = CASES["line"][0]
    short = line.copy()
    short[:, :12] = False
    cases = [(tube, thin), (thin, tube), CASES["ring"][:2], CASES["line"][:2], (line, short), (short, line)]
    for p, r in cases:
        got = binary_metrics(p, r, metrics=["cldice"])["clDice"]
        assert got == pytest.approx(_cldice(p, r), rel=1e-12)
    assert binary_metrics(tube, tube, metrics=["cldice"])["clDice"] == 1.0
    assert binary_metrics(*CASES["line"][:2], metrics=["cldice"])["clDice"] == 0.0   # parallel lines, no overlap


def test_empty_conventions_of_the_new_metrics():
    z = np.zeros((6, 8, 8), bool)
    m = z.copy()
    m[1:4, 2:6, 2:6] = True
    both = binary_metrics(z, z, (1, 1, 1), metrics=["all"])
    for k in ("Precision", "Recall", "RVD", "HD", "HD95_MR", "MASD", "BoundaryIoU", "clDice", "F1", "PQ",
              "MatchedDice"):
        assert math.isnan(both[k]), k
    missed = binary_metrics(z, m, (1, 1, 1), metrics=["all"])     # nothing predicted
    assert math.isnan(missed["Precision"]) and missed["Recall"] == 0.0 and missed["RVD"] == -1.0
    assert missed["BoundaryIoU"] == 0.0 and missed["clDice"] == 0.0 and missed["NSD"] == 0.0
    assert math.isnan(missed["HD"]) and math.isnan(missed["MASD"]) and math.isnan(missed["HD95_MR"])
    assert (missed["FN_inst"], missed["F1"], missed["PQ"]) == (1, 0.0, 0.0) and math.isnan(missed["MatchedDice"])
    spurious = binary_metrics(m, z, (1, 1, 1), metrics=["all"])   # nothing in the reference
    assert spurious["Precision"] == 0.0 and math.isnan(spurious["Recall"]) and math.isnan(spurious["RVD"])


def test_per_label_nsd_tolerance():
    rng = np.random.default_rng(0)
    ref = (ndimage.gaussian_filter(rng.random((8, 20, 18)), 1.5) * 40).astype(np.int16) % 3
    pred = np.roll(ref, 1, axis=1)
    sp = (2.0, 0.6, 0.9)
    res = label_metrics(pred, ref, [1, 2], sp, ["nsd"], {1: 2.0, 2: 0.5})
    for v, tol in ((1, 2.0), (2, 0.5)):
        want = binary_metrics(pred == v, ref == v, sp, metrics=["nsd"], nsd_tolerance=tol)["NSD"]
        assert res[v]["NSD"] == want
    assert res[1]["NSD"] != label_metrics(pred, ref, [1], sp, ["nsd"], 0.5)[1]["NSD"]
    default = label_metrics(pred, ref, [1, 2], sp, ["nsd"], {None: 0.5, 1: 2.0})
    assert default[1]["NSD"] == res[1]["NSD"] and default[2]["NSD"] == res[2]["NSD"]
    with pytest.raises(ValueError, match="no NSD tolerance for label 2"):
        label_metrics(pred, ref, [1, 2], sp, ["nsd"], {1: 2.0})


def test_parse_tolerance():
    assert parse_tolerance(None) == 1.0 and parse_tolerance(["1.5"]) == 1.5
    assert parse_tolerance(["1:2.0", "2:1"]) == {1: 2.0, 2: 1.0}
    assert parse_tolerance(["0.5", "3:2"]) == {None: 0.5, 3: 2.0}
    for bad in (["x"], ["1:0"], ["-1"], ["1:nan"], ["1:2", "1:3"], ["inf"]):
        with pytest.raises(ValueError, match="tolerance"):
            parse_tolerance(bad)


def test_summary_records_definitions_and_parameters():
    p, r, sp = CASES["two_blobs"]
    s = evaluate_arrays([("c0", p.astype(np.uint8), r.astype(np.uint8), sp)], [1], metrics=["all"],
                        nsd_tolerance={1: 1.5}, boundary_width=3.0)
    defs = s["metric_definitions"]
    keys = [k for k in s["mean"]["1"] if not k.startswith(("TP", "FP", "FN", "TN", "n_"))]
    assert set(defs) == set(keys) and len(keys) == 16
    assert all(defs[k]["definition"] and defs[k]["empty"] for k in keys)
    assert "POOLED" in defs["HD95"]["definition"] and "DIRECTED" in defs["HD95_MR"]["definition"]
    assert "label 1: 1.5 mm" in defs["NSD"]["definition"] and "3 mm" in defs["BoundaryIoU"]["definition"]
    assert "diagonal" in defs["HD"]["empty"] and s["nsd_tolerance_mm"] == {"1": 1.5}
    assert s["metric_parameters"] == {"boundary_width": 3.0, "match_iou": 0.5, "instances": "components"}
    default = evaluate_arrays([("c0", p.astype(np.uint8), r.astype(np.uint8), sp)], [1])
    assert "BoundaryIoU" not in default["metric_definitions"] and "HD95_MR" in default["metric_definitions"]
    nan = evaluate_arrays([("c0", p.astype(np.uint8), r.astype(np.uint8), sp)], [1], empty="nan")
    assert nan["metric_definitions"]["HD95"]["definition"] == default["metric_definitions"]["HD95"]["definition"]
    assert "NaN" in nan["metric_definitions"]["HD95"]["empty"]
