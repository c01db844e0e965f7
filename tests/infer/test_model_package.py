"""Model packages (salseg.run.package): export -> install into a fresh root -> predict gives the training root's
labels; ``predict --model`` from the zip, its unpacked folder, or the result folder; every hostile package refused
with one line and nothing written."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import zipfile

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from salseg import results
from salseg.run.package import MANIFEST

DATASET = "Dataset901_InferToy"  # as in conftest.py
MODEL = ["-n", "unet", "-c", "3d_fullres"]
FAST = ["--device", "cpu", "-q", "--no-mirroring", "--save-probabilities"]


def cli(root, *args):
    from salseg_cli.main import app

    r = CliRunner().invoke(app, ["--root", str(root), *args])
    return r.exit_code, r.output  # stdout and stderr together


def ok(root, *args):
    code, text = cli(root, *args)
    assert code == 0, text
    return text


def outputs(folder):
    """{file name: label array or probabilities} of a prediction folder."""
    out = {}
    for p in sorted(folder.iterdir()):
        if p.name.endswith(".nii.gz"):
            out[p.name] = sitk.GetArrayFromImage(sitk.ReadImage(str(p)))
        elif p.suffix == ".npz":
            out[p.name] = np.load(p)["probabilities"]
    return out


def assert_same(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture
def exported(toy_root, tmp_path):
    """(training root, images, the package of folds 0 and 1, the training root's prediction)."""
    images = results.raw_dir(toy_root, DATASET) / "imagesTs"
    zip_path = tmp_path / "model.zip"
    text = ok(toy_root, "export-model", DATASET, "unet", "-c", "3d_fullres", "-f", "0", "1", "-o", str(zip_path))
    assert "folds 0, 1" in text
    ref = tmp_path / "ref"
    ok(toy_root, "predict", DATASET, *MODEL, "-i", str(images), "-o", str(ref), *FAST)
    return toy_root, images, zip_path, outputs(ref)


def test_export_install_predict_matches_training_root(exported, tmp_path):
    root, images, zip_path, ref = exported
    with zipfile.ZipFile(zip_path) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read(MANIFEST))
        assert names == {MANIFEST, *manifest["files"]}
        for name, digest in manifest["files"].items():
            assert hashlib.sha256(z.read(name)).hexdigest() == digest
    assert manifest["format_version"] == 1 and manifest["folds"] == ["0", "1"]
    assert {"fold_0/weights.npz", "fold_1/config.json", "plans.json", "dataset.json"} <= names
    assert not any(n.endswith((".pt", ".pkl")) for n in names)  # no pickles inside

    fresh = tmp_path / "fresh"  # no raw data, no preprocessed data: the package alone
    ok(fresh, "install-model", str(zip_path))
    assert (results.experiment_dir(fresh, DATASET, "unet", "none", "3d_fullres") / "fold_1" /
            results.CHECKPOINT_FINAL).is_file()
    assert not results.raw_dir(fresh, DATASET).exists()
    out = tmp_path / "installed"
    ok(fresh, "predict", DATASET, *MODEL, "-i", str(images), "-o", str(out), *FAST)
    assert_same(outputs(out), ref)
    code, text = cli(fresh, "install-model", str(zip_path))  # installing twice is refused
    assert code == 2 and "already there" in text

    # predict --model from the zip, from its unpacked folder, from the result folder: no data root involved
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(zip_path).extractall(unpacked)
    exp = results.experiment_dir(root, DATASET, "unet", "none", "3d_fullres")
    for i, source in enumerate((zip_path, unpacked, exp)):
        out = tmp_path / f"model{i}"
        text = ok(tmp_path / "nowhere", "predict", "--model", str(source), "-f", "0", "1", "-i", str(images),
                  "-o", str(out), *FAST)
        assert_same(outputs(out), ref)
    assert not (tmp_path / "nowhere").exists()


def _rewrite(src, dst, *, drop=(), add=(), change=None, manifest_edit=None, symlink=None):
    """A copy of the package ``src`` with entries dropped / added / changed and the manifest edited."""
    with zipfile.ZipFile(src) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    manifest = json.loads(entries[MANIFEST])
    if change:
        name, data, rehash = change
        entries[name] = data
        if rehash:
            manifest["files"][name] = hashlib.sha256(data).hexdigest()
    if manifest_edit:
        manifest_edit(manifest)
    entries[MANIFEST] = json.dumps(manifest).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for n, data in entries.items():
            if n not in drop:
                z.writestr(n, data)
        for n, data in add:
            z.writestr(n, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16)
            z.writestr(info, "/etc/passwd")
    return dst


def _newer(m):
    m["format_version"] = 99
    m["salseg_version"] = "9.0"


def _pickled_state():
    return pickle.dumps({"x": np.zeros(3)})


HOSTILE = {
    "dotdot": (dict(add=[("../evil.json", b"{}")]), "'..'"),
    "absolute": (dict(add=[("/tmp/evil.json", b"{}")]), "absolute"),
    "symlink": (dict(symlink="fold_0/link.json"), "symbolic link"),
    "outside_manifest": (dict(add=[("fold_0/extra.json", b"{}")]), "not in salseg-model.json"),
    "hash_mismatch": (None, "fold_0/weights.npz does not match its SHA-256"),
    "pickle": (None, "pickle"),
    "pickle_listed": (dict(manifest_edit=lambda m: m["files"].update({"fold_0/evil.pkl": "0" * 64}),
                           add=[("fold_0/evil.pkl", pickle.dumps(1))]), "never pickles"),
    "newer_format": (dict(manifest_edit=_newer), "format version 99"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_packages_refused_nothing_written(exported, tmp_path, kind):
    root, images, zip_path, _ = exported
    spec, needle = HOSTILE[kind]
    with zipfile.ZipFile(zip_path) as z:
        weights = z.read("fold_0/weights.npz")
    if kind == "hash_mismatch":
        changed = bytearray(weights)
        changed[len(changed) // 2] ^= 1
        spec = dict(change=("fold_0/weights.npz", bytes(changed), False))
    elif kind == "pickle":  # a pickle in place of the weights, hash updated: refused by content
        spec = dict(change=("fold_0/weights.npz", _pickled_state(), True))
    bad = _rewrite(zip_path, tmp_path / f"{kind}.zip", **spec)
    fresh, out = tmp_path / "fresh", tmp_path / "out"
    for args in (["install-model", str(bad)],
                 ["predict", "--model", str(bad), "-i", str(images), "-o", str(out), "--device", "cpu", "-q"]):
        code, text = cli(fresh, *args)
        assert code == 2, text
        assert needle in text, text
        assert len(text.strip().splitlines()) == 1 and text.startswith("error:"), text
    assert not fresh.exists() and not out.exists()
    assert not (tmp_path / "evil.json").exists()


def test_weights_read_without_pickle(exported):
    from salseg.errors import DataError
    from salseg.run.package import read_weights

    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    obj = io.BytesIO()
    with zipfile.ZipFile(obj, "w") as z:
        z.writestr("w.npy", buf.getvalue())
    with pytest.raises(DataError, match="not a pickle-free weights file"):
        read_weights(obj.getvalue(), "x.npz")


def test_weights_are_stored_and_json_deflated(exported):
    """Weights (and ONNX graphs) go into the zip as they are: inflating 80 MB cost every prediction ~0.25 s."""
    with zipfile.ZipFile(exported[2]) as z:
        kinds = {i.filename: i.compress_type for i in z.infolist()}
    assert kinds and all(v == zipfile.ZIP_STORED for k, v in kinds.items() if k.endswith((".npz", ".onnx")))
    assert all(v == zipfile.ZIP_DEFLATED for k, v in kinds.items() if k.endswith(".json"))
