"""The torch export path equals the scipy reference path (labels on >= 99.9 % of voxels, identical geometry).

Properties come from ``preprocess_case`` on images written to disk (crop box, anisotropic and isotropic resampling,
no resampling); the probabilities are smooth random blobs on the preprocessed grid. The scipy path
(``method="scipy"``: scipy zoom per class, un-crop, argmax) is the reference implementation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage

from salseg.dataset.io import read_image, read_label
from salseg.errors import ConfigError
from salseg.infer.export import export_prediction, labels_torch, revert, revert_torch
from salseg.infer.resample_torch import axis_map, resampled_labels
from salseg.preprocess import preprocess_case
from salseg.preprocess.resample import resample_probabilities
from tests.typed_plans import make_plans

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CT = DATA / "spine" / "sample_ct" / "sub-ct_label-22_ct.nii.gz"
VERT = DATA / "spine" / "sample_ct" / "sub-ct_seg-vert_label-22_msk.nii.gz"
LABELS = [0, 2, 7, 9]


def _plans(spacing, label_values=LABELS):
    return make_plans({"3d_fullres": {"dim": 3, "spacing": list(spacing), "patch_size": [16, 16, 16],
                                      "normalization": ["zscore"], "intensity_properties": {}}}, label_values)


def _case(tmp_path, shape, spacing, target):
    """(properties, smooth probabilities on the preprocessed grid) of an image with a zero border (crop box)."""
    rng = np.random.default_rng(0)
    arr = np.zeros(shape, np.float32)
    arr[1:-2, 3:-1, 2:-4] = rng.random((shape[0] - 3, shape[1] - 4, shape[2] - 6)) + 1
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    img.SetOrigin((4.0, -3.0, 12.5))
    img.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(img, str(tmp_path / "img.nii.gz"))
    data, props = read_image(tmp_path / "img.nii.gz")
    pdata, _, properties = preprocess_case(data, props, _plans(target), "3d_fullres", case_id="c")
    logits = ndimage.gaussian_filter(rng.normal(size=(len(LABELS),) + pdata.shape[1:]), (0, 1.5, 1.5, 1.5)) * 20
    probs = torch.softmax(torch.from_numpy(logits), 0).numpy().astype(np.float32)
    return properties, probs


CASES = {  # image shape, spacing (z, y, x), target spacing
    "anisotropic": ((12, 40, 36), (3.0, 0.7, 0.7), (2.0, 1.1, 0.9)),   # thick z: nearest along z, linear in-plane
    "isotropic": ((20, 22, 26), (1.0, 0.8, 0.9), (1.4, 1.3, 0.6)),     # trilinear, up and down
    "native": ((10, 18, 20), (1.0, 1.0, 1.0), (1.0, 1.0, 1.0)),        # crop only, no resampling
}


@pytest.mark.parametrize("name", list(CASES))
def test_torch_export_equals_scipy_export(tmp_path, name):
    shape, spacing, target = CASES[name]
    properties, probs = _case(tmp_path, shape, spacing, target)
    assert properties["crop_bbox"] != [[0, s] for s in shape]
    paths = {}
    for method in ("scipy", "torch"):
        paths[method] = export_prediction(probs, properties, LABELS, tmp_path / method / "c.nii.gz",
                                          save_probabilities=True, method=method)
    ref, got = (sitk.ReadImage(str(paths[m])) for m in ("scipy", "torch"))
    for attr in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(got, attr)() == getattr(ref, attr)()
    a, b = sitk.GetArrayFromImage(ref), sitk.GetArrayFromImage(got)
    assert a.dtype == b.dtype and a.shape == tuple(shape)
    assert (a == b).mean() >= 0.999
    assert len(np.unique(a)) > 2  # the blobs really exercise several classes
    pa, pb = (np.load(paths[m].with_name("c.npz"))["probabilities"] for m in ("scipy", "torch"))
    np.testing.assert_allclose(pb, pa, atol=2e-5)


def test_uncertainty_and_tensor_input_match(tmp_path):
    properties, probs = _case(tmp_path, *CASES["anisotropic"][:1], *CASES["anisotropic"][1:])
    unc = probs.max(0)
    out = {}
    for method, p in (("scipy", probs), ("torch", torch.from_numpy(probs))):
        path = export_prediction(p, properties, LABELS, tmp_path / method / "c.nii.gz", uncertainty=unc,
                                 method=method)
        out[method] = sitk.GetArrayFromImage(sitk.ReadImage(str(path.with_name("c_uncertainty.nii.gz"))))
    np.testing.assert_allclose(out["torch"], out["scipy"], atol=2e-5)
    with pytest.raises(ConfigError, match="export method"):
        export_prediction(probs, properties, LABELS, tmp_path / "x.nii.gz", method="skimage")


def test_axis_map_against_scipy_zoom():
    """The per-axis indices and weights reproduce scipy's zoom (grid mode, edges extended) on a ramp."""
    x = np.random.default_rng(3).random(7)
    for n_out in (3, 7, 11, 16):
        for nearest, order in ((False, 1), (True, 0)):
            i0, i1, w = axis_map(7, n_out, nearest)
            ref = ndimage.zoom(x, n_out / 7, order=order, mode="nearest", grid_mode=True)
            np.testing.assert_allclose(x[i0] * (1 - w) + x[i1] * w, ref, atol=1e-12)


def test_chunking_does_not_change_labels():
    rng = np.random.default_rng(4)
    p = torch.softmax(torch.from_numpy(rng.normal(size=(3, 5, 9, 8)).astype(np.float32)), 0)
    for axis in (None, 0, 2):
        whole = resampled_labels(p, (11, 7, 13), axis, chunk_bytes=1 << 30)
        tiny = resampled_labels(p, (11, 7, 13), axis, chunk_bytes=1)
        assert torch.equal(whole, tiny)
        ref = resample_probabilities(p.numpy(), (11, 7, 13), axis).argmax(0)
        assert (whole.numpy() == ref).mean() >= 0.999


def test_spine_ct_export_matches(tmp_path):
    if not CT.is_file() or not VERT.is_file():
        pytest.skip(f"spine sample CT not found under {DATA}")
    data, props = read_image(CT)
    label, _ = read_label(VERT)
    plans = _plans((3.0, 2.0, 2.5), [0, 21, 22, 23])
    pdata, seg, properties = preprocess_case(data, props, plans, "3d_fullres", seg=label, case_id="spine")
    onehot = (np.arange(4)[:, None, None, None] == np.maximum(seg, 0)[None]).astype(np.float32)
    probs = ndimage.gaussian_filter(onehot, (0, 0.7, 0.7, 0.7))  # soft edges: no exact ties
    a = labels_torch(probs, properties, [0, 21, 22, 23])
    from salseg.infer.export import labels_from_probabilities
    b = labels_from_probabilities(revert(probs, properties), [0, 21, 22, 23])
    assert a.shape == b.shape == label.shape and a.dtype == b.dtype
    assert (a == b).mean() >= 0.999
    np.testing.assert_allclose(revert_torch(probs, properties)[:, ::7], revert(probs, properties)[:, ::7], atol=2e-5)
