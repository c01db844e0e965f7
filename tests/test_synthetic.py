import json

import numpy as np
import SimpleITK as sitk

from salseg.dataset.check import check_dataset
from salseg.synthetic import generate_synthetic, synth_patient


def test_layout_groups_and_ranges(tmp_path):
    out = generate_synthetic(tmp_path, cases=5, seed=3)
    assert out.name == "Dataset901_SynthACDC"
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["numTraining"] == 5 and ds["labels"] == {"background": 0, "RV": 1, "MLV": 2, "LVC": 3}
    groups = ds["groups"]
    assert len(set(groups.values())) == 3  # ceil(5 / 2) patients
    assert [c for c in groups if groups[c] == "patient001"][0] == "patient001_frame01"
    assert sum(g == "patient002" for g in groups.values()) == 2
    assert check_dataset(out) == []
    for f in sorted((out / "imagesTr").iterdir()):
        img = sitk.ReadImage(str(f))
        sx, sy, sz = img.GetSpacing()
        nx, ny, nz = img.GetSize()
        assert 1.3 <= sx == sy <= 1.7 and 5 <= sz <= 10 and 8 <= nz <= 14 and 128 <= nx <= 224 and 128 <= ny <= 224


def test_deterministic(tmp_path):
    a = generate_synthetic(tmp_path / "a", cases=2, seed=7)
    b = generate_synthetic(tmp_path / "b", cases=2, seed=7)
    c = generate_synthetic(tmp_path / "c", cases=2, seed=8)
    for sub in ("imagesTr", "labelsTr"):
        for f in sorted((a / sub).iterdir()):
            assert f.read_bytes() == (b / sub / f.name).read_bytes()
    fa = sorted((a / "imagesTr").iterdir())[0]
    fc = sorted((c / "imagesTr").iterdir())[0]
    assert not fc.exists() or fa.read_bytes() != fc.read_bytes()


def test_anatomy_ed_es_and_long_axis():
    (ed_name, ed, ed_lab, _), (es_name, es, es_lab, _) = synth_patient(0, 4)
    assert ed_name == "frame01" and es_name != ed_name
    assert (es_lab == 3).sum() < 0.8 * (ed_lab == 3).sum()          # smaller LV cavity at ES
    per_slice = [(ed_lab[z] > 0).sum() for z in range(ed_lab.shape[0])]
    assert per_slice[0] > 2 * per_slice[-1]                          # apex smaller than base
    rv = [(ed_lab[z] == 1).sum() for z in range(ed_lab.shape[0])]
    assert rv[0] > 0 and rv[-1] == 0                                  # RV disappears toward the apex
    # the LV pool is brighter than the myocardium around it in the same slice
    z = 0
    assert np.median(ed[z][ed_lab[z] == 3]) > 1.8 * np.median(ed[z][ed_lab[z] == 2])


def _best_interval_dice(values: np.ndarray, target: np.ndarray, bins: int = 96) -> float:
    """Oracle: best Dice of 'lo <= intensity < hi' for one class over all voxels (histogram search)."""
    edges = np.quantile(values, np.linspace(0, 1, bins + 1))
    idx = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)
    all_h = np.bincount(idx, minlength=bins)
    cls_h = np.bincount(idx[target], minlength=bins)
    ca, cc = np.concatenate([[0], np.cumsum(all_h)]), np.concatenate([[0], np.cumsum(cls_h)])
    tp = cc[None, :] - cc[:, None]
    pred = ca[None, :] - ca[:, None]
    dice = np.where(pred > 0, 2 * tp / (pred + target.sum()), 0)
    return float(dice.max())


def test_threshold_classifier_fails():
    vals, labs = [], []
    for i in range(3):
        for _, img, lab, _ in synth_patient(1, i):
            lo, hi = np.percentile(img, [0.5, 99.5])                  # per-image normalisation, as a U-Net gets
            vals.append(((img - lo) / (hi - lo)).ravel())
            labs.append(lab.ravel())
    v, lab = np.concatenate(vals), np.concatenate(labs)
    dices = [_best_interval_dice(v, lab == c) for c in (1, 2, 3)]
    assert np.mean(dices) < 0.7, dices
