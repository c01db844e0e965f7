"""Round 3, predict: outputs never over inputs (existing files need --overwrite, a raw dataset folder is always
refused), every supported input ending is read (anything else is listed, not skipped), the temporary files of a
killed export are removed by the next run, and a read-only output names the user's path."""

import errno
import os
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
import SimpleITK as sitk

from salseg import results as R
from tests.faults.helpers import DS, NAME, cli, one_line_error

PRED = ("predict", NAME, "-n", "unet", "-c", "2d", "--device", "cpu", "-q")


def _image(root, case="case0"):
    return R.raw_dir(root, DS) / "imagesTr" / f"{case}_0000.nii.gz"


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_existing_outputs_need_overwrite(trained_root, tmp_path):
    out = tmp_path / "out"
    assert cli(*PRED, "-i", _image(trained_root), "-o", out, root=trained_root).exit_code == 0
    (out / "case0.nii.gz").write_bytes(b"the user's own file")
    r = cli(*PRED, "-i", _image(trained_root), "-o", out, root=trained_root)
    assert r.exit_code == 2, r.output
    assert one_line_error(r) == (f"error: {out}: 1 file(s) there would be overwritten (case0.nii.gz); pass "
                                 f"--overwrite to replace them or choose another -o")
    assert (out / "case0.nii.gz").read_bytes() == b"the user's own file"
    r = cli(*PRED, "-i", _image(trained_root), "-o", out, "--overwrite", root=trained_root)
    assert r.exit_code == 0, r.output
    assert sitk.ReadImage(str(out / "case0.nii.gz")).GetSize() == (16, 16, 6)
    assert sorted(os.listdir(out)) == ["case0.nii.gz"]      # no lock, no temporary file left


@pytest.mark.parametrize("sub", ["labelsTr", "imagesTr", "imagesTs", "."])
def test_raw_dataset_folders_always_refused(trained_root, sub):
    raw = R.raw_dir(trained_root, DS)
    target = (raw / sub) if sub != "." else raw
    before = _snapshot(raw / "labelsTr"), _snapshot(raw / "imagesTr")
    for extra in ((), ("--overwrite",)):
        r = cli(*PRED, "-i", _image(trained_root), "-o", target, *extra, root=trained_root)
        assert r.exit_code == 2, r.output
        assert f"error: {target}: output folder is inside the raw dataset {raw.resolve()}" in one_line_error(r)
    assert (_snapshot(raw / "labelsTr"), _snapshot(raw / "imagesTr")) == before
    assert not (raw / "imagesTs").exists()


def test_output_never_replaces_an_input(trained_root, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    scan = work / "scan.nii.gz"                              # no channel suffix: its output name is its own name
    shutil.copy(_image(trained_root), scan)
    r = cli(*PRED, "-i", scan, "-o", work, "--overwrite", root=trained_root)
    assert r.exit_code == 2, r.output
    assert one_line_error(r).startswith(f"error: {scan}: the output would replace this input image")
    assert scan.read_bytes() == _image(trained_root).read_bytes()


def test_every_supported_ending_is_read(trained_root, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    img = sitk.ReadImage(str(_image(trained_root)))
    for name in ("a_0000.nii.gz", "b_0000.nii", "c_0000.mha", "d_0000.nrrd"):
        sitk.WriteImage(img, str(src / name))
    out = tmp_path / "out"
    r = cli(*PRED, "-i", src, "-o", out, root=trained_root)
    assert r.exit_code == 0, r.output
    assert sorted(os.listdir(out)) == ["a.nii.gz", "b.nii.gz", "c.nii.gz", "d.nii.gz"]
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "a.nii.gz")))
    for case in "bcd":                                       # the same voxels, whatever the ending
        assert (sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{case}.nii.gz"))) == ref).all()


def test_files_that_would_be_skipped_are_listed(trained_root, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(_image(trained_root), src / "a_0000.nii.gz")
    (src / "notes.txt").write_text("scanner settings")
    shutil.copy(_image(trained_root), src / "b.nii.gz")      # no channel suffix: a case of a one-channel model
    r = cli(*PRED, "-i", src, "-o", tmp_path / "out", root=trained_root)
    assert r.exit_code == 2, r.output
    assert one_line_error(r).startswith(f"error: {src}: 1 file(s) would be skipped (notes.txt): inputs "
                                        f"are images with an ending in")
    assert not (tmp_path / "out").exists()


def test_temporary_files_of_a_killed_export_are_removed(trained_root, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stale = [out / ".case0.nii.gz.k1ll3d.part.nii.gz", out / ".case3.npz.x7.part.npz"]
    for p in stale:
        p.write_bytes(b"half a file")
    r = cli(*PRED, "-i", _image(trained_root), "-o", out, root=trained_root)
    assert r.exit_code == 0, r.output
    assert sorted(os.listdir(out)) == ["case0.nii.gz"]


def test_write_error_names_the_users_path(trained_root, tmp_path, monkeypatch):
    out = tmp_path / "out"

    def denied(*args, dir=None, prefix="", suffix="", **kwargs):   # what mkstemp raises in a read-only folder
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, f"{prefix}abc{suffix}"))

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    r = cli(*PRED, "-i", _image(trained_root), "-o", out, root=trained_root)
    assert r.exit_code == 2, r.output
    assert one_line_error(r) == f"error: {out / 'case0.nii.gz'}: permission denied (nothing written)"


def test_read_only_output_folder(trained_root, tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount") or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(out)], capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here (needs root); test_write_error_names_the_users_path "
                    "covers the message")
    try:
        r = cli(*PRED, "-i", _image(trained_root), "-o", out, root=trained_root)
        assert r.exit_code == 2, r.output
        assert one_line_error(r) == f"error: {out}: read-only file system (nothing written)"
    finally:
        subprocess.run(["umount", str(out)], check=False)


def test_one_channel_given_twice_is_refused(tmp_path):
    from salseg.errors import DataError
    from salseg.infer.inputs import collect_cases

    img = sitk.GetImageFromArray(np.zeros((2, 4, 4), np.float32))
    for name in ("a_0000.nii.gz", "a_0000.mha", "b_0000.nrrd"):
        sitk.WriteImage(img, str(tmp_path / name))
    with pytest.raises(DataError, match=r"a_0000\.nii\.gz: channel 0 of case 'a' is also given as a_0000\.mha"):
        collect_cases(tmp_path, ".nii.gz")
    (tmp_path / "a_0000.nii.gz").unlink()
    assert collect_cases(tmp_path, ".nii.gz") == [("a", [tmp_path / "a_0000.mha"]), ("b", [tmp_path / "b_0000.nrrd"])]
