"""A one-channel model reads ``Case3.nii.gz`` (no ``_0000``) as case ``Case3``, says which naming it used, and
predicts exactly what it predicts for the same image named ``Case3_0000.nii.gz``."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from salseg import results
from salseg.errors import DataError
from salseg.infer.inputs import collect_cases, naming

DATASET = "Dataset901_InferToy"  # as in conftest.py
BASE = ["predict", DATASET, "unet", "-c", "3d_fullres", "-f", "0", "--device", "cpu", "-q", "--no-mirroring"]


def _predict(root, src, out):
    from salseg_cli.main import app

    res = CliRunner().invoke(app, ["--root", str(root), *BASE, "-i", str(src), "-o", str(out)])
    return res.exit_code, res.output + (res.stderr if res.stderr_bytes else "")


def test_single_channel_files_without_suffix(toy_root, tmp_path):
    images = results.raw_dir(toy_root, DATASET) / "imagesTs"
    bare, suffixed = tmp_path / "bare", tmp_path / "suffixed"
    bare.mkdir()
    suffixed.mkdir()
    for i, name in enumerate(("Case3", "Case4")):
        shutil.copy(images / f"case{i}_0000.nii.gz", bare / f"{name}.nii.gz")
        shutil.copy(images / f"case{i}_0000.nii.gz", suffixed / f"{name}_0000.nii.gz")
    code, text = _predict(toy_root, bare, tmp_path / "out_bare")
    assert code == 0, text
    assert "inputs named <case><ending> (one single-channel file per case, no _0000 suffix)" in text, text
    code, text = _predict(toy_root, suffixed, tmp_path / "out_suffixed")
    assert code == 0, text
    assert "inputs named <case>_0000<ending> (nnU-Net's channel files)" in text, text
    for name in ("Case3", "Case4"):
        a, b = (sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / d / f"{name}.nii.gz")))
                for d in ("out_bare", "out_suffixed"))
        np.testing.assert_array_equal(a, b)
    assert sorted(p.name for p in (tmp_path / "out_bare").iterdir()) == ["Case3.nii.gz", "Case4.nii.gz"]


def test_naming_rules(tmp_path):
    for name in ("a_0000.nii.gz", "b.nii.gz", "c_0000.nii.gz", "c_0001.nii.gz"):
        (tmp_path / name).write_bytes(b"")
    one = collect_cases(tmp_path, ".nii.gz", in_channels=1)
    assert [(c, [f.name for f in files]) for c, files in one] == \
        [("a", ["a_0000.nii.gz"]), ("b", ["b.nii.gz"]), ("c", ["c_0000.nii.gz", "c_0001.nii.gz"])]
    assert naming(one) == "<case><ending> for 1 case(s), <case>_0000<ending> for 2"
    with pytest.raises(DataError, match=r"1 file\(s\) would be skipped \(b.nii.gz\)"):
        collect_cases(tmp_path, ".nii.gz", in_channels=2)  # several channels: nnU-Net's names only
    (tmp_path / "a.nii.gz").write_bytes(b"")
    with pytest.raises(DataError, match="case name 'a' used twice"):
        collect_cases(tmp_path, ".nii.gz", in_channels=1)
