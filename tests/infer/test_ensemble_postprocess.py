"""Ensembles of saved probabilities and postprocessing decided on cross-validation (salseg.infer.ensemble,
salseg.infer.postprocess; CLI ensemble / postprocess)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from salseg.dataset.io import read_label, write_image
from salseg.fileio import write_json, write_npz
from salseg.infer.postprocess import Rules, decide, keep_largest, largest_component, read_rules, write_rules
from salseg_cli.main import app

GEOM = {"spacing": [2.0, 1.0, 1.0], "origin": [0.0, 0.0, 0.0], "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1],
        "ndim": 3, "shape": [4, 6, 5]}
LABELS = [0, 1, 5]


def write_probs(folder: Path, case: str, probs: np.ndarray, labels=LABELS, geom=GEOM) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_npz(folder / f"{case}.npz", probabilities=probs.astype(np.float32), label_values=np.asarray(labels))
    write_json(folder / f"{case}.json", {"case_id": case, "original": geom, "label_values": labels,
                                         "file_ending": ".nii.gz"})


def random_probs(rng, k=3, shape=(4, 6, 5)) -> np.ndarray:
    x = rng.random((k, *shape))
    return x / x.sum(0, keepdims=True)


@pytest.fixture
def two_sets(tmp_path):
    rng = np.random.default_rng(0)
    sets = {}
    for name in ("a", "b"):
        sets[name] = {c: random_probs(rng) for c in ("case1", "case2")}
        for c, p in sets[name].items():
            write_probs(tmp_path / name, c, p)
    return tmp_path, sets


def test_ensemble_of_two_sets_is_the_direct_mean(two_sets):
    tmp, sets = two_sets
    r = CliRunner().invoke(app, ["ensemble", "-i", str(tmp / "a"), str(tmp / "b"), "-o", str(tmp / "out"),
                                 "--save-probabilities", "-q"])
    assert r.exit_code == 0, r.output
    for c in ("case1", "case2"):
        mean = (sets["a"][c].astype(np.float32) + sets["b"][c].astype(np.float32)) / 2
        with np.load(tmp / "out" / f"{c}.npz") as f:
            np.testing.assert_allclose(f["probabilities"], mean, rtol=1e-6)
        seg, props = read_label(tmp / "out" / f"{c}.nii.gz")
        np.testing.assert_array_equal(seg, np.asarray(LABELS)[mean.argmax(0)])
        assert props["spacing"] == GEOM["spacing"]


def _run(args):
    return CliRunner().invoke(app, args)


def test_missing_cases_are_named_and_nothing_is_written(two_sets):
    tmp, _ = two_sets
    (tmp / "b" / "case2.npz").unlink()
    r = _run(["ensemble", "-i", str(tmp / "a"), str(tmp / "b"), "-o", str(tmp / "out"), "-q"])
    assert r.exit_code == 2
    assert "case2" in r.output and "missing" in r.output and str(tmp / "b") in r.output
    assert not (tmp / "out").exists()


def test_different_labels_and_geometry_are_refused(two_sets, tmp_path):
    tmp, sets = two_sets
    write_probs(tmp / "c", "case1", sets["a"]["case1"], labels=[0, 1, 2])
    write_probs(tmp / "c", "case2", sets["a"]["case2"], labels=[0, 1, 2])
    r = _run(["ensemble", "-i", str(tmp / "a"), str(tmp / "c"), "-o", str(tmp / "out"), "-q"])
    assert r.exit_code == 2 and "label values" in r.output and "[0, 1, 2]" in r.output
    moved = dict(GEOM, origin=[5.0, 0.0, 0.0])
    write_probs(tmp / "d", "case1", sets["a"]["case1"])
    write_probs(tmp / "d", "case2", sets["a"]["case2"], geom=moved)
    r = _run(["ensemble", "-i", str(tmp / "a"), str(tmp / "d"), "-o", str(tmp / "out"), "-q"])
    assert r.exit_code == 2 and "case2" in r.output and "origin" in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not (tmp / "out").exists()


def test_largest_component_matches_scipy_with_full_connectivity():
    vol = np.zeros((5, 9, 9), np.uint8)
    vol[0:3, 0:3, 0:3] = 1          # 27 voxels
    vol[3, 3, 3] = 1                # touches the block at one corner only (26-connected, not 6-connected)
    vol[4, 7:9, 7:9] = 1            # 4 voxels, separate
    vol[1, 6, 0] = 1                # 1 voxel, separate
    keep = largest_component(vol > 0)
    lab, _ = ndimage.label(vol > 0, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(lab.ravel())[1:]
    np.testing.assert_array_equal(keep, lab == (np.argmax(sizes) + 1))
    assert keep.sum() == 28 and keep[3, 3, 3]  # the corner neighbour joins under 26-connectivity
    seg = vol * 5
    out = keep_largest(seg, [5])
    assert set(np.unique(out[~keep])) == {0} and np.all(out[keep] == 5)


def test_largest_component_2d_is_8_connected():
    img = np.zeros((1, 4, 4), bool)
    img[0, 0, 0] = img[0, 1, 1] = img[0, 2, 2] = True  # a diagonal line: one component in 8-connectivity
    img[0, 0, 3] = True
    assert largest_component(img).sum() == 3


def _cases_with_stray(stray_is_right: bool):
    """One case: class 1 predicted as a big blob + a small stray blob; the stray blob is in the reference or not."""
    pred = np.zeros((1, 12, 12), np.int16)
    pred[0, 1:6, 1:6] = 1
    pred[0, 9:11, 9:11] = 1
    ref = np.zeros_like(pred)
    ref[0, 1:6, 1:6] = 1
    if stray_is_right:
        ref[0, 9:11, 9:11] = 1
    return [(pred, ref)]


def test_postprocessing_adopted_when_it_helps_and_rejected_when_it_lowers_dice(tmp_path):
    helps = decide(_cases_with_stray(False), [0, 1])
    assert helps.all_foreground and helps.record["all_foreground"]["dice_after"]["1"] == 1.0
    assert helps.record["all_foreground"]["dice_before"]["1"] == pytest.approx(2 * 25 / (29 + 25))
    hurts = decide(_cases_with_stray(True), [0, 1])
    assert not hurts.all_foreground and hurts.classes == []
    assert hurts.record["per_class"]["1"]["dice_after"] < hurts.record["per_class"]["1"]["dice_before"] == 1.0
    # the stored rules read back and apply the same
    write_rules(tmp_path / "pp.json", helps)
    back = read_rules(tmp_path / "pp.json")
    pred = _cases_with_stray(False)[0][0]
    np.testing.assert_array_equal(back.apply(pred), helps.apply(pred))
    assert back.apply(pred).sum() == 25


def test_postprocess_cli_applies_rules(tmp_path):
    pred = _cases_with_stray(False)[0][0]
    geom = {"spacing": [999.0, 1.0, 1.0], "origin": [0.0, 0.0], "direction": [1, 0, 0, 1], "ndim": 2,
            "shape": [1, 12, 12]}
    (tmp_path / "in").mkdir()
    write_image(pred.astype(np.uint8), geom, tmp_path / "in" / "c1.png")
    write_rules(tmp_path / "pp.json", Rules([0, 1], all_foreground=True))
    r = _run(["postprocess", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--rules",
              str(tmp_path / "pp.json"), "-q"])
    assert r.exit_code == 0, r.output
    seg, _ = read_label(tmp_path / "out" / "c1.png")
    assert seg.sum() == 25
    write_json(tmp_path / "bad.json", {"format": "nope"})
    r = _run(["postprocess", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "o2"), "--rules",
              str(tmp_path / "bad.json"), "-q"])
    assert r.exit_code == 2 and "bad.json" in r.output and not (tmp_path / "o2").exists()
