"""Export restores the raw geometry exactly (oblique spine CT) and maps class indices back to label VALUES."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from salseg.dataset.io import read_image, read_label
from salseg.infer.export import export_prediction, labels_from_probabilities, probabilities_path, uncertainty_path
from tests.typed_plans import make_plans

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CT = DATA / "spine" / "sample_ct" / "sub-ct_label-22_ct.nii.gz"
VERT = DATA / "spine" / "sample_ct" / "sub-ct_seg-vert_label-22_msk.nii.gz"


def test_labels_from_probabilities_maps_to_values():
    p = np.zeros((3, 1, 2, 2), np.float32)
    p[0, 0, 0, 0] = p[1, 0, 0, 1] = p[2, 0, 1, 0] = p[2, 0, 1, 1] = 1
    lab = labels_from_probabilities(p, [0, 21, 300])
    np.testing.assert_array_equal(lab, [[[0, 21], [300, 300]]])
    assert lab.dtype == np.int16
    assert labels_from_probabilities(p, [0, 1, 2]).dtype == np.uint8
    assert probabilities_path(Path("o/c1.nii.gz")) == Path("o/c1.npz")
    assert uncertainty_path(Path("o/c1.png")) == Path("o/c1_uncertainty.nii.gz")


def spine_plans(spacing):
    return make_plans({"3d_fullres": {"dim": 3, "spacing": list(spacing), "patch_size": [32, 32, 32],
                                      "normalization": ["zscore"], "intensity_properties": {}}}, [0, 21, 22, 23])


@pytest.mark.parametrize("spacing", [None, (3.0, 2.0, 2.5)], ids=["native", "resampled"])
def test_export_restores_oblique_spine_geometry(tmp_path, spacing):
    if not CT.is_file() or not VERT.is_file():
        pytest.skip(f"spine sample CT not found under {DATA} (../shared/data next to the repo)")
    from salseg.preprocess import preprocess_case

    data, props = read_image(CT)
    label, _ = read_label(VERT)
    assert not np.allclose(np.reshape(props["direction"], (3, 3)), np.eye(3))  # really oblique
    plans = spine_plans(spacing or props["spacing"])
    pdata, seg, properties = preprocess_case(data, props, plans, "3d_fullres", seg=label, case_id="spine")
    assert seg.shape == pdata.shape[1:]
    onehot = (np.arange(4)[:, None, None, None] == np.maximum(seg, 0)[None]).astype(np.float32)
    out = export_prediction(onehot, properties, plans.label_values, tmp_path / "spine.nii.gz",
                            save_probabilities=True)

    ref, got = sitk.ReadImage(str(VERT)), sitk.ReadImage(str(out))
    assert got.GetSize() == ref.GetSize()
    assert got.GetSpacing() == ref.GetSpacing()      # exactly, not approximately
    assert got.GetOrigin() == ref.GetOrigin()
    assert got.GetDirection() == ref.GetDirection()
    pred = sitk.GetArrayFromImage(got)
    assert set(np.unique(pred)) <= {0, 21, 22, 23}
    if spacing is None:  # no resampling: the labels come back voxel for voxel
        np.testing.assert_array_equal(pred, label)
    else:
        for v in (21, 22, 23):
            a, b = pred == v, label == v
            assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.85
    probs = np.load(tmp_path / "spine.npz")
    assert probs["probabilities"].shape == (4,) + label.shape
    np.testing.assert_allclose(probs["probabilities"].sum(0), 1, atol=1e-4)
    np.testing.assert_array_equal(probs["label_values"], [0, 21, 22, 23])
