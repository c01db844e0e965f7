"""plan_dataset end to end on tiny raw datasets, plans.json validation, and the CLI."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from salseg.errors import ConfigError, DataError
from salseg.fileio import read_json, write_json
from salseg.plan import plan_dataset
from salseg.plans import load_plans
from salseg.plan.splits import validate_splits
from salseg.preprocess.crop import nonzero_bbox

from tests.plan.rawdata_helpers import blob_case, image_2d_props, write_raw_dataset


def test_acdc_like_plan(acdc_like):
    root, folder, cases = acdc_like
    plans = plan_dataset(root, "ACDC", seed=1)
    pre = root / "preprocessed" / "Dataset027_ACDC"
    fp, splits = read_json(pre / "fingerprint.json"), read_json(pre / "splits.json")
    assert read_json(pre / "plans.json") == plans == load_plans(root, "27").to_dict()
    # fingerprint: shapes after crop are the nonzero boxes, spacings as written
    by_id = {c["id"]: c for c in cases}
    for cid, shape, sp in zip(fp["cases"], fp["shapes_after_crop"], fp["spacings"]):
        box = nonzero_bbox(by_id[cid]["image"])
        assert shape == [b - a for a, b in box]
        assert sp == pytest.approx(by_id[cid]["props"]["spacing"])
    counts = {}
    for c in cases:
        for v, n in zip(*np.unique(c["label"], return_counts=True)):
            counts[str(v)] = counts.get(str(v), 0) + int(n)
    assert fp["class_voxel_counts"] == counts
    fg = np.concatenate([c["image"][0][c["label"] > 0] for c in cases])   # all sampled: fewer than the cap
    st = fp["foreground_intensity"]["0"]
    assert st["mean"] == pytest.approx(fg.mean(), rel=1e-5)
    assert st["percentile_99_5"] == pytest.approx(np.percentile(fg, 99.5), rel=1e-5)
    # plans: thick axis 10th percentile, in-plane median, patch <= the median shape padded up to the stride
    z = [c["props"]["spacing"][0] for c in cases]
    full = plans["configurations"]["3d_fullres"]
    assert full["spacing"][0] == pytest.approx(np.percentile(z, 10))
    assert full["spacing"][1:] == pytest.approx([1.5, 1.5])
    for cfg in plans["configurations"].values():
        assert all(p <= -(-m // d) * d for p, m, d in zip(cfg["patch_size"], cfg["median_shape"],
                                                          cfg["patch_divisor"]))
        assert cfg["batch_size"] >= 2
    assert plans["label_values"] == [0, 1, 2] and plans["num_classes"] == 3
    assert plans["configurations"]["2.5d"]["data_identifier"] == "2d"
    # splits: both frames of a patient in the same fold; 3 patients -> 3 folds
    groups = {c["id"]: c["id"].split("_")[0] for c in cases}
    assert len(splits) == 3 and validate_splits(splits, list(by_id), groups) == []
    # deterministic for the seed
    assert plan_dataset(root, "ACDC", seed=1) == plans and read_json(pre / "splits.json") == splits


def test_configs_restrict_and_ct(tmp_path):
    rng = np.random.default_rng(1)
    cases = [blob_case(f"c{i}", (12, 30, 34), (2.0, 0.8, 0.8), rng, ct=True) for i in range(3)]
    write_raw_dataset(tmp_path, "Spine", cases, channel_names={"0": "CT"},
                      labels={"background": 0, "L1": 21, "L2": 22})
    from salseg.dataset.io import write_image
    for c in cases:  # relabel 1, 2 -> 21, 22 on disk
        lab = np.where(c["label"] > 0, c["label"] + 20, 0).astype(np.int16)
        write_image(lab, c["props"], tmp_path / "raw" / "Dataset001_Spine" / "labelsTr" / f"{c['id']}.nii.gz")
    plans = plan_dataset(tmp_path, "Spine", configs=["3d_fullres"])
    assert list(plans["configurations"]) == ["3d_fullres"]
    cfg = plans["configurations"]["3d_fullres"]
    assert cfg["normalization"] == ["ct"] and cfg["use_mask_for_norm"] == [False]
    assert plans["label_values"] == [0, 21, 22]
    fg = np.concatenate([c["image"][0][c["label"] > 0] for c in cases])
    assert cfg["intensity_properties"]["0"]["percentile_00_5"] == pytest.approx(np.percentile(fg, 0.5), rel=1e-5)


def test_2d_png_dataset(tmp_path):
    rng = np.random.default_rng(2)
    cases = []
    for i in range(2):
        img = rng.integers(0, 255, size=(1, 1, 40, 50)).astype(np.float32)
        lab = np.zeros((1, 40, 50), np.int16)
        lab[0, 10:20, 10:30] = 1
        cases.append({"id": f"im{i}", "image": img, "label": lab, "props": image_2d_props((40, 50))})
    write_raw_dataset(tmp_path, "Gray", cases, labels={"background": 0, "gland": 1}, file_ending=".png",
                      channel_names={"0": "gray"})
    plans = plan_dataset(tmp_path, "Gray")
    assert set(plans["configurations"]) == {"2d", "2.5d"}
    assert plans["configurations"]["2d"]["normalization"] == ["rgb"]
    assert plans["configurations"]["2d"]["spacing"] == [1.0, 1.0]


def test_bad_dataset_is_reported_before_planning(acdc_like):
    root, folder, cases = acdc_like
    (folder / "labelsTr" / f"{cases[0]['id']}.nii.gz").unlink()
    with pytest.raises(DataError) as e:
        plan_dataset(root, "ACDC")
    assert cases[0]["id"] in str(e.value)
    assert not (root / "preprocessed" / "Dataset027_ACDC" / "plans.json").exists()


def test_load_plans_names_file_and_field(acdc_like):
    root, *_ = acdc_like
    plan_dataset(root, "ACDC")
    path = root / "preprocessed" / "Dataset027_ACDC" / "plans.json"
    d = read_json(path)
    d["configurations"]["2d"]["patch_size"] = [30, "x"]
    write_json(path, d)
    with pytest.raises(ConfigError, match=r"plans\.json: field 'configurations\.2d\.patch_size'"):
        load_plans(root, "ACDC")
    d["configurations"]["2d"]["patch_size"] = [33, 33]
    write_json(path, d)
    with pytest.raises(ConfigError, match="not a multiple of the total stride 8 8.*nearest valid: 32 32 or 40 40"):
        load_plans(root, "ACDC")
    del d["label_values"]
    write_json(path, d)
    with pytest.raises(ConfigError, match="label_values"):
        load_plans(root, "ACDC")


def test_cli_plan_and_unknown_dataset(acdc_like):
    from salseg_cli.main import app

    root, *_ = acdc_like
    runner = CliRunner()
    r = runner.invoke(app, ["--root", str(root), "plan", "Nope"])
    assert r.exit_code != 0
    assert "Dataset027_ACDC" in r.output and "Nope" in r.output
    r = runner.invoke(app, ["--root", str(root), "plan", "ACDC", "--configs", "2d", "3d_fullres", "--seed", "2"])
    assert r.exit_code == 0, r.output
    plans = json.loads((root / "preprocessed" / "Dataset027_ACDC" / "plans.json").read_text())
    assert set(plans["configurations"]) == {"2d", "3d_fullres"} and plans["seed"] == 2
    r = runner.invoke(app, ["--root", str(root), "plan", "ACDC", "--configs", "4d"])
    assert r.exit_code != 0 and "4d" in r.output
