"""Fault 7: a full disk, permission denied or a read-only file system end in one line naming the path, exit 2,
and no partial file."""

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


def _leftovers(folder):
    return sorted(p.name for p in folder.rglob(".*part*"))


def test_enospc_during_preprocess(planned_root, monkeypatch):
    folder = R.config_dir(planned_root, DS, "2d")
    shutil.rmtree(folder)
    real, calls = np.savez, {"n": 0}

    def full_disk(file, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            with open(file, "wb") as f:
                f.write(b"PK\x03\x04half")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(file, *args, **kwargs)

    monkeypatch.setattr(np, "savez", full_disk)
    r = cli("preprocess", NAME, "-c", "2d", root=planned_root)
    assert r.exit_code == 2, r.output
    line = one_line_error(r)
    assert "case2.npz: no space left on the device" in line, line
    assert _leftovers(folder) == [] and not (folder / "case2.npz").exists()
    assert sorted(p.name for p in folder.glob("*.npz")) == ["case0.npz", "case1.npz"]


def test_short_image_write_is_caught(trained_root, tmp_path, monkeypatch):
    """SimpleITK reports a short write only on stderr; the written file is verified before it is renamed."""
    real = sitk.WriteImage

    def short_write(img, path, *args, **kwargs):
        real(img, path, *args, **kwargs)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)

    monkeypatch.setattr(sitk, "WriteImage", short_write)
    monkeypatch.setattr("salseg.fileio._free_bytes", lambda folder: 0)
    out = tmp_path / "out"
    img = R.raw_dir(trained_root, DS) / "imagesTr" / "case0_0000.nii.gz"
    r = cli("predict", "-i", img, "-o", out, "-d", NAME, "-n", "unet", "-c", "2d", "--device", "cpu", "-q",
            root=trained_root)
    assert r.exit_code == 2, r.output
    assert f"{out / 'case0.nii.gz'}: no space left on the device" in one_line_error(r)
    assert not out.exists() or sorted(os.listdir(out)) == []


def test_permission_denied(planned_root, monkeypatch):
    def denied(*args, dir=None, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", dir)

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    r = cli("plan", NAME, root=planned_root)
    assert r.exit_code == 2, r.output
    line = one_line_error(r)
    assert f"{R.preprocessed_dir(planned_root, DS)}: permission denied" in line, line


def test_read_only_root(tmp_path, monkeypatch):
    from pathlib import Path

    real = Path.mkdir

    def read_only(self, *args, **kwargs):
        if str(self).startswith(str(tmp_path)):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    r = cli("synth", "--cases", "2", root=tmp_path / "root")
    assert r.exit_code == 2, r.output
    assert "read-only file system" in one_line_error(r) and str(tmp_path) in r.output
    monkeypatch.setattr(Path, "mkdir", real)
    assert not (tmp_path / "root").exists() or not list((tmp_path / "root").rglob("*.nii.gz"))


def _mount_tmpfs(path, size):
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_real_full_tmpfs(planned_root):
    folder = R.config_dir(planned_root, DS, "2d")
    shutil.rmtree(folder)
    if not _mount_tmpfs(folder, "24k"):
        pytest.skip("cannot mount a small tmpfs here (needs root); the patched-write tests cover ENOSPC")
    try:
        r = cli("preprocess", NAME, "-c", "2d", root=planned_root)
        assert r.exit_code == 2, r.output
        assert "no space left on the device" in one_line_error(r)
        assert _leftovers(folder) == []
        for p in folder.glob("*.npz"):                      # what is there is whole
            assert np.load(p)["data"].ndim == 4
    finally:
        subprocess.run(["umount", str(folder)], check=False)
