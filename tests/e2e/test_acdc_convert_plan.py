"""`salseg convert acdc` + `salseg plan ACDC` on an official-layout fixture with mixed slice spacings."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from salseg_cli.main import app

SLICE_SPACINGS = [5.0, 6.5, 10.0, 5.0, 10.0, 6.5, 10.0]
INPLANE = [1.40, 1.45, 1.50, 1.55, 1.60, 1.52, 1.48]


def _write(path, arr, spacing_xyz):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing_xyz)
    sitk.WriteImage(img, str(path))


def make_acdc(src, rng):
    for n, (dz, dxy) in enumerate(zip(SLICE_SPACINGS, INPLANE), start=1):
        pid = f"patient{n:03d}"
        d = src / "training" / pid
        d.mkdir(parents=True)
        es = 9 + n
        (d / "Info.cfg").write_text(f"ED: 1\nES: {es}\nGroup: NOR\nHeight: 170.0\nNbFrame: 30\nWeight: 70.0\n")
        nz, ny, nx = 8 + n % 3, 44 + 2 * (n % 2), 40
        for f in (1, es):
            img = rng.integers(50, 500, (nz, ny, nx)).astype(np.int16)
            lab = np.zeros((nz, ny, nx), np.uint8)
            lab[1:-1, 10:30, 8:30] = 2
            lab[1:-1, 14:26, 12:26] = 3
            lab[1:-2, 10:30, 30:36] = 1
            _write(d / f"{pid}_frame{f:02d}.nii.gz", img, (dxy, dxy, dz))
            _write(d / f"{pid}_frame{f:02d}_gt.nii.gz", lab, (dxy, dxy, dz))


def _plan_available() -> bool:
    r = CliRunner().invoke(app, ["plan", "--help"])
    return r.exit_code == 0


def test_convert_then_plan(tmp_path):
    if not _plan_available():
        pytest.skip("the `plan` command is not available yet")
    make_acdc(tmp_path / "ACDC", np.random.default_rng(0))
    runner = CliRunner()
    root = tmp_path / "root"
    r = runner.invoke(app, ["--root", str(root), "convert", "acdc", str(tmp_path / "ACDC")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["--root", str(root), "plan", "ACDC", "--seed", "1"])
    assert r.exit_code == 0, r.output
    pre = root / "preprocessed" / "Dataset027_ACDC"
    splits = json.loads((pre / "splits.json").read_text())
    plans = json.loads((pre / "plans.json").read_text())
    ds = json.loads((root / "raw" / "Dataset027_ACDC" / "dataset.json").read_text())

    assert len(splits) == 5
    vals = [c for s in splits for c in s["val"]]
    assert sorted(vals) == sorted(ds["groups"])                     # every case in exactly one val fold
    for n in range(1, len(SLICE_SPACINGS) + 1):
        pid = f"patient{n:03d}"
        folds = {i for i, s in enumerate(splits) for c in s["val"] if c.startswith(pid + "_")}
        assert len(folds) == 1, f"{pid} frames in folds {folds}"   # both frames of a patient in one fold

    cfg = plans["configurations"]["3d_fullres"]
    per_case_z = [dz for dz in SLICE_SPACINGS for _ in range(2)]    # two frames per patient
    per_case_xy = [s for s in INPLANE for _ in range(2)]
    assert cfg["spacing"][0] == pytest.approx(np.percentile(per_case_z, 10))
    assert cfg["spacing"][1] == pytest.approx(np.median(per_case_xy))
    assert cfg["spacing"][2] == pytest.approx(np.median(per_case_xy))
    for name, c in plans["configurations"].items():
        # nnU-Net's rule: clipped to the median shape, then padded UP to the total stride
        assert all(p <= -(-m // d) * d for p, m, d in zip(c["patch_size"], c["median_shape"], c["patch_divisor"])), \
            (name, c)
