"""synth --kind brats (nested regions, 4 channels) and --kind sparse (ignore label, dense test cases)."""

import json

import numpy as np
import SimpleITK as sitk

from salseg.dataset.cases import list_cases
from salseg.dataset.check import check_dataset
from salseg.dataset.dataset_json import load_dataset_json
from salseg.plan.fingerprint import compute_fingerprint
from salseg.synthetic import synth_patient
from salseg.synthetic_kinds import SPARSE_IGNORE, brats_case, generate, sparsify


def _arr(p):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(p)))


def test_brats_regions_nested_and_multimodal(tmp_path):
    out = generate(tmp_path, "brats", cases=3, seed=1)
    assert out.name == "Dataset902_SynthBraTS" and check_dataset(out) == []
    info = load_dataset_json(out)
    spec = info.label_spec
    assert spec.region_names == ("whole tumour", "tumour core", "enhancing tumour") and info.num_channels == 4
    lab = _arr(out / "labelsTr" / "brats_002.nii.gz")
    assert set(np.unique(lab)) == {0, 1, 2, 3}
    wt, tc, et = spec.region_masks(lab)
    assert et.any() and (tc & ~et).any() and (wt & ~tc).any()            # three distinct nested structures
    assert not (et & ~tc).any() and not (tc & ~wt).any()
    np.testing.assert_array_equal(spec.regions_to_labels(np.stack([wt, tc, et])), lab)
    img, ref_lab, _ = brats_case(1, 1)
    np.testing.assert_array_equal(lab, ref_lab)
    for c in range(4):                                                     # channel c as written
        np.testing.assert_array_equal(_arr(out / "imagesTr" / f"brats_002_{c:04d}.nii.gz"), np.round(img[c]))
    flair, t1ce = img[3], img[1]
    assert flair[wt].mean() > 1.5 * flair[~wt & (lab == 0) & (flair > 100)].mean()
    assert t1ce[et].mean() > 1.4 * t1ce[wt & ~et].mean()                    # the rim only shows on T1ce
    plain = load_dataset_json(generate(tmp_path, "brats-labels", cases=3, seed=1))
    assert not plain.label_spec.has_regions and plain.label_values == [0, 1, 2, 3]
    np.testing.assert_array_equal(_arr(plain_dir(tmp_path) / "labelsTr" / "brats_002.nii.gz"), lab)


def plain_dir(root):
    return root / "raw" / "Dataset903_SynthBraTSLabels"


def test_sparse_ignore_and_dense_test_cases(tmp_path):
    out = generate(tmp_path, "sparse", cases=3, seed=2)
    assert check_dataset(out) == []
    info = load_dataset_json(out)
    assert info.label_spec.ignore == SPARSE_IGNORE and info.label_values == [0, 1, 2, 3]
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["numTraining"] == 3 and sorted(p.name for p in (out / "labelsTs").iterdir()) == [
        "patient003_frame01.nii.gz", f"patient003_{synth_patient(2, 2)[1][0]}.nii.gz",
        "patient004_frame01.nii.gz", f"patient004_{synth_patient(2, 3)[1][0]}.nii.gz"]
    _, _, dense, _ = synth_patient(2, 2)[0]
    np.testing.assert_array_equal(_arr(out / "labelsTs" / "patient003_frame01.nii.gz"), dense)
    lab = _arr(out / "labelsTr" / "patient001_frame01.nii.gz")
    full = synth_patient(2, 0)[0][2]
    np.testing.assert_array_equal(lab, sparsify(full, offset=0))
    kept = [z for z in range(lab.shape[0]) if not (lab[z] == SPARSE_IGNORE).all()]
    assert kept == list(range(0, lab.shape[0], 3))
    # the fingerprint leaves ignored voxels out of the class counts and of the foreground samples
    cases = list_cases(out, info, "Tr")
    fp = compute_fingerprint("x", info, cases, seed=0)
    labs = [_arr(c.label) for c in cases]
    direct = {str(v): int(sum((x == v).sum() for x in labs)) for v in range(4)}
    assert fp["class_voxel_counts"] == {k: n for k, n in direct.items() if n}
    assert fp["ignored_voxel_count"] == sum(int((x == SPARSE_IGNORE).sum()) for x in labs)
    imgs = [_arr(c.images[0]) for c in cases]
    fg = np.concatenate([i[(x > 0) & (x != SPARSE_IGNORE)] for i, x in zip(imgs, labs)]).astype(np.float64)
    assert abs(fp["foreground_intensity"]["0"]["mean"] - fg.mean()) < 1e-6 * abs(fg.mean())


def test_kinds_deterministic(tmp_path):
    a = generate(tmp_path / "a", "brats", cases=1, seed=4)
    b = generate(tmp_path / "b", "brats", cases=1, seed=4)
    for sub in ("imagesTr", "labelsTr"):
        for f in sorted((a / sub).iterdir()):
            assert f.read_bytes() == (b / sub / f.name).read_bytes()


def test_plan_warns_region_value_no_label_map_holds(tmp_path, caplog):
    import logging

    from salseg.plan import plan_dataset

    out = generate(tmp_path, "brats", cases=2, seed=5)
    d = json.loads((out / "dataset.json").read_text())
    d["labels"]["whole tumour"] = [1, 2, 3, 5]                               # 5 occurs in no label map
    (out / "dataset.json").write_text(json.dumps(d))
    with caplog.at_level(logging.WARNING, logger="salseg"):
        plans = plan_dataset(tmp_path, "902", configs=["2d"])
    assert f"{out / 'dataset.json'}: region 'whole tumour' names label value 5, which no label map contains" \
        in caplog.text
    assert plans["label_spec"]["regions"][0] == [1, 2, 3, 5]
