"""Region predictions: sigmoid probabilities -> regions > 0.5 -> label map painted in regions_class_order, on the
original grid (outside the crop: background), never the ignore value."""

import numpy as np
import pytest
import SimpleITK as sitk

from salseg.dataset.labels import parse_labels
from salseg.infer.export import export_prediction, probabilities_path
from salseg.preprocess import preprocess_case
from tests.typed_plans import make_plans

SPEC = parse_labels({"background": 0, "wt": [1, 2, 3], "tc": [2, 3], "et": [3], "ignore": 4}, [1, 2, 3], "d")


def _case(spacing):
    rng = np.random.default_rng(0)
    data = np.zeros((1, 6, 20, 18), np.float32)
    data[:, 1:5, 2:17, 3:15] = rng.normal(5, 1, (1, 4, 15, 12))        # the nonzero crop is smaller than the image
    seg = np.zeros((6, 20, 18), np.uint8)
    seg[1:5, 4:15, 5:13] = 1
    seg[2:4, 6:13, 6:12] = 2
    seg[2:4, 8:11, 7:10] = 3
    props = {"spacing": [2.0, 1.0, 1.0], "origin": [0.0, 0.0, 0.0], "direction": list(np.eye(3).ravel()),
             "itk_size": [18, 20, 6], "ndim": 3, "shape": [6, 20, 18]}
    plans = make_plans({"3d_fullres": {"dim": 3, "spacing": list(spacing), "patch_size": [4, 8, 8],
                                       "normalization": ["zscore"], "intensity_properties": {}}}, [0, 1, 2, 3],
                       label_spec=SPEC.to_json())
    return data, seg, props, plans


@pytest.mark.parametrize("method", ["torch", "scipy"])
@pytest.mark.parametrize("spacing", [(2.0, 1.0, 1.0), (2.0, 0.7, 0.8)], ids=["native", "resampled"])
def test_region_export_paints_class_order(tmp_path, method, spacing):
    data, seg, props, plans = _case(spacing)
    seg_sparse = seg.copy()
    seg_sparse[:, :, :4] = 4                                            # ignored voxels are carried as index 4
    pdata, pseg, properties = preprocess_case(data, props, plans, "3d_fullres", seg=seg_sparse, case_id="c")
    assert pseg.max() == 4 and sorted(properties["class_locations"]) == ["1", "2", "3"]   # ignore: not sampled
    _, pseg, properties = preprocess_case(data, props, plans, "3d_fullres", seg=seg, case_id="c")
    # perfect region probabilities from the preprocessed index map (values 0..3 are indices 0..3)
    masks = np.stack([np.isin(pseg, r) for r in SPEC.regions]).astype(np.float32)
    probs = 0.1 + 0.8 * masks                                           # 0.9 inside, 0.1 outside every region
    out = export_prediction(probs, properties, SPEC.label_values, tmp_path / "c.nii.gz", method=method, spec=SPEC,
                            save_probabilities=True)
    got = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert got.shape == seg.shape and set(np.unique(got)) <= {0, 1, 2, 3}  # never the ignore value 4
    if spacing == (2.0, 1.0, 1.0):
        np.testing.assert_array_equal(got, seg)
    else:
        assert (got == seg).mean() > 0.97
    saved = np.load(probabilities_path(out))
    assert saved["probabilities"].shape == (3,) + seg.shape
    assert list(saved["regions_class_order"]) == [1, 2, 3]
    assert saved["probabilities"][:, 0].max() == 0.0                    # outside the crop: no region
    np.testing.assert_array_equal(SPEC.regions_to_labels(saved["probabilities"] > 0.5), got)
