"""Evaluation per region (equal to medpy on the region masks) beside per label, and ignored voxels left out."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from salseg.dataset.labels import parse_labels
from salseg.evaluate import evaluate_arrays, evaluate_folders

medpy_binary = pytest.importorskip("medpy.metric.binary")

SPEC = parse_labels({"background": 0, "wt": [1, 2, 3], "tc": [2, 3], "et": [3], "ignore": 4}, [1, 2, 3], "d")
SPACING = (2.0, 0.8, 1.1)


def _maps(seed):
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.arange(n) for n in (10, 24, 22)], indexing="ij")
    def blob(cz, cy, cx, r):
        return ((z - cz) * 2) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= r * r
    ref = np.zeros((10, 24, 22), np.uint8)
    c = rng.integers(8, 14, 3)
    ref[blob(5, c[1], c[2], 8)] = 1
    ref[blob(5, c[1], c[2], 5)] = 2
    ref[blob(5, c[1] + 1, c[2], 3)] = 3
    pred = np.zeros_like(ref)
    d = rng.integers(-2, 3, 3)
    pred[blob(5, c[1] + d[1], c[2] + d[2], 7 + rng.integers(0, 3))] = 1
    pred[blob(5, c[1] + d[1], c[2], 5)] = 2
    pred[blob(4, c[1], c[2] + d[2], 3)] = 3
    sparse = ref.copy()
    sparse[:, :, : 6 + seed] = 4                                    # part of the volume is not annotated
    return pred, ref, sparse


def _medpy(p, r):
    return (medpy_binary.dc(p, r), medpy_binary.hd95(p, r, voxelspacing=SPACING),
            medpy_binary.assd(p, r, voxelspacing=SPACING))


def test_regions_equal_medpy_on_region_masks():
    cases = [(f"c{i}", *_maps(i)[:2], SPACING) for i in range(3)]
    s = evaluate_arrays(cases, spec=SPEC, metrics=("dice", "hd95", "assd"))
    assert list(s["regions"]) == ["(1, 2, 3)", "(2, 3)", "(3,)"]
    assert s["regions"]["(2, 3)"] == {"name": "tc", "values": [2, 3], "paints": 2}
    assert s["labels"] == [1, 2, 3]                                  # the labels are scored as before
    for (cid, pred, ref, _), case in zip(cases, s["metric_per_case"]):
        for key, vals in zip(s["regions"], SPEC.regions):
            p, r = np.isin(pred, vals), np.isin(ref, vals)
            dc, hd, asd = _medpy(p, r)
            m = case["region_metrics"][key]
            assert m["Dice"] == pytest.approx(dc, abs=1e-9)
            assert m["HD95"] == pytest.approx(hd, rel=1e-6)
            assert m["ASSD"] == pytest.approx(asd, rel=1e-6)
        assert case["metrics"]["2"]["Dice"] == pytest.approx(medpy_binary.dc(pred == 2, ref == 2))
    wt = [c["region_metrics"]["(1, 2, 3)"]["Dice"] for c in s["metric_per_case"]]
    assert s["region_mean"]["(1, 2, 3)"]["Dice"] == pytest.approx(np.mean(wt))
    assert s["region_foreground_mean"]["Dice"] == pytest.approx(np.mean([s["region_mean"][k]["Dice"]
                                                                          for k in s["regions"]]))


def test_ignored_voxels_left_out(tmp_path):
    pred, dense, sparse = _maps(1)
    s = evaluate_arrays([("c", pred, sparse, SPACING)], spec=SPEC, metrics=("dice", "hd95"))
    keep = sparse != 4
    p0, r0 = np.where(keep, pred, 0), np.where(keep, sparse, 0)     # the same maps with ignored voxels removed
    for v in (1, 2, 3):
        m = s["metric_per_case"][0]["metrics"][str(v)]
        assert m["Dice"] == pytest.approx(medpy_binary.dc(p0 == v, r0 == v))
        assert m["TP"] + m["FP"] + m["FN"] + m["TN"] == int(keep.sum())
    m = s["metric_per_case"][0]["region_metrics"]["(1, 2, 3)"]
    assert m["Dice"] == pytest.approx(medpy_binary.dc(p0 > 0, r0 > 0))
    assert m["HD95"] == pytest.approx(medpy_binary.hd95(p0 > 0, r0 > 0, voxelspacing=SPACING), rel=1e-6)
    assert s["ignore_label"] == 4 and "4" not in s["metric_per_case"][0]["metrics"]
    # folders: the spec comes from the dataset.json beside the references
    raw = tmp_path / "Dataset902_X"
    (raw / "labelsTr").mkdir(parents=True)
    (tmp_path / "pred").mkdir()
    (raw / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T1"}, "numTraining": 1, "file_ending": ".nii.gz", "regions_class_order": [1, 2, 3],
        "labels": {"background": 0, "wt": [1, 2, 3], "tc": [2, 3], "et": [3], "ignore": 4}}))
    for arr, path in ((sparse, raw / "labelsTr" / "c.nii.gz"), (pred, tmp_path / "pred" / "c.nii.gz")):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(SPACING[::-1])
        sitk.WriteImage(img, str(path))
    f = evaluate_folders(tmp_path / "pred", raw / "labelsTr", metrics=("dice", "hd95"))
    assert f["metric_per_case"][0]["region_metrics"]["(1, 2, 3)"]["Dice"] == pytest.approx(m["Dice"])
    assert f["labels"] == [1, 2, 3] and f["ignore_label"] == 4


def test_stats_reads_regions(tmp_path):
    from salseg.stats.load import case_values, check_label
    from salseg.errors import DataError

    cases = [(f"c{i}", *_maps(i)[:2], SPACING) for i in range(3)]
    s = evaluate_arrays(cases, spec=SPEC, metrics=("dice", "hd95"), file_ending=".nii.gz")
    assert check_label("1,2,3") == check_label("(1, 2, 3)") == "(1, 2, 3)" and check_label("(3,)") == "(3,)"
    wt = case_values(s, tmp_path, "Dice", "(1, 2, 3)")
    assert wt == {f"c{i}": s["metric_per_case"][i]["region_metrics"]["(1, 2, 3)"]["Dice"] for i in range(3)}
    mean = case_values(s, tmp_path, "HD95", "regions")
    for i, c in enumerate(s["metric_per_case"]):
        assert mean[f"c{i}"] == pytest.approx(np.mean([m["HD95"] for m in c["region_metrics"].values()]))
    plain = evaluate_arrays(cases, metrics=("dice",), file_ending=".nii.gz")
    with pytest.raises(DataError, match="has no region metrics"):
        case_values(plain, tmp_path, "Dice", "regions")


def test_csv_has_a_row_per_case_and_region(tmp_path):
    """The CSV beside summary.json: each case's label rows, then one per region (key as label, name as label_name),
    values equal to summary.json's."""
    import csv

    from salseg.evaluate.summary import write_summary

    cases = [(f"c{i}", *_maps(i)[:2], SPACING) for i in range(2)]
    s = evaluate_arrays(cases, spec=SPEC, metrics=("dice", "hd95"))
    _, csv_path = write_summary(s, tmp_path / "summary.json")
    rows = list(csv.DictReader(csv_path.open()))
    assert [(r["label"], r["label_name"]) for r in rows[:6]] == [
        ("1", "1"), ("2", "2"), ("3", "3"), ("(1, 2, 3)", "wt"), ("(2, 3)", "tc"), ("(3,)", "et")]  # labels unnamed
    assert len(rows) == 2 * 6
    for r in rows:
        case = next(c for c in s["metric_per_case"] if c["prediction_file"] == r["prediction_file"])
        m = case["region_metrics"][r["label"]] if r["label"].startswith("(") else case["metrics"][r["label"]]
        assert float(r["Dice"]) == pytest.approx(m["Dice"], abs=1e-12)
        assert float(r["HD95"]) == pytest.approx(m["HD95"], rel=1e-12)
