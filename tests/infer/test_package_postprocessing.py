"""Postprocessing rules in a model package (issue 23): export-model packages the rules find-best decided for the
experiment, ``predict --model`` applies them (``--no-postprocessing``: the raw prediction; ``--rules``: other
rules), a tampered or foreign rules file is refused, install-model puts the file back where find-best writes it."""

from __future__ import annotations

import hashlib
import json
import zipfile

import numpy as np
import pytest
from scipy import ndimage

from salseg import results
from salseg.run.package import MANIFEST
from salseg.run.rules import Rules, write_rules
from tests.infer.test_model_package import DATASET, _rewrite, cli, ok, outputs

EXP = ("unet", "none", "3d_fullres")
FAST = ["--device", "cpu", "-q", "--no-mirroring"]


def keep_largest_foreground(seg):
    """Independent reference: the largest 26-connected component of all foreground; the rest becomes 0."""
    lab, n = ndimage.label(seg > 0, structure=np.ones((3, 3, 3), bool))
    if n <= 1:
        return seg
    sizes = ndimage.sum_labels(np.ones_like(lab), lab, index=np.arange(1, n + 1))
    out = seg.copy()
    out[(lab > 0) & (lab != 1 + int(np.argmax(sizes)))] = 0
    return out


def labels_only(folder):
    return {k: v for k, v in outputs(folder).items() if k.endswith(".nii.gz")}


@pytest.fixture
def packaged(toy_root, tmp_path):
    """(root, images, package with find-best's rules "largest component of all foreground", raw prediction)."""
    rules_file = results.postprocessing_file(toy_root, DATASET, *EXP)
    write_rules(rules_file, Rules([0, 1, 5], all_foreground=True, record={"cases": 4}))
    images = results.raw_dir(toy_root, DATASET) / "imagesTs"
    zip_path = tmp_path / "model.zip"
    text = ok(toy_root, "export-model", DATASET, "unet", "-c", "3d_fullres", "-o", str(zip_path))
    assert "postprocessing: largest component of all foreground" in text, text
    raw = tmp_path / "raw"
    text = ok(tmp_path / "nowhere", "predict", "--model", str(zip_path), "-i", str(images), "-o", str(raw),
              "--no-postprocessing", *FAST)
    assert "postprocessing: off (--no-postprocessing)" in text, text
    return toy_root, images, zip_path, labels_only(raw), rules_file


def test_package_carries_rules_and_predict_applies_them(packaged, tmp_path):
    root, images, zip_path, raw, rules_file = packaged
    with zipfile.ZipFile(zip_path) as z:
        manifest = json.loads(z.read(MANIFEST))
        data = z.read("postprocessing.json")
    assert data == rules_file.read_bytes()
    assert manifest["files"]["postprocessing.json"] == hashlib.sha256(data).hexdigest()
    assert manifest["postprocessing"] == "largest component of all foreground"

    # the raw prediction of random weights has several foreground components: the rule changes something
    assert any(ndimage.label(seg > 0, structure=np.ones((3, 3, 3), bool))[1] > 1 for seg in raw.values())
    out = tmp_path / "pp"
    text = ok(tmp_path / "nowhere", "predict", "--model", str(zip_path), "-i", str(images), "-o", str(out),
              "--save-probabilities", *FAST)
    assert f"postprocessing: largest component of all foreground (from {zip_path}:postprocessing.json" in text
    got = labels_only(out)
    assert sorted(got) == sorted(raw)
    for name, seg in raw.items():
        np.testing.assert_array_equal(got[name], keep_largest_foreground(seg), err_msg=name)
    assert any(not np.array_equal(got[n], raw[n]) for n in raw)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"case{i}{e}" for i in range(2) for e in (".nii.gz", ".npz", ".json")])  # no staging folder left

    # --continue: a removed case is predicted again (and postprocessed), the other skipped
    (out / "case1.nii.gz").unlink()
    text = ok(tmp_path / "nowhere", "predict", "--model", str(zip_path), "-i", str(images), "-o", str(out),
              "--save-probabilities", "--continue", *FAST)
    assert "skipped 1 case(s)" in text, text
    np.testing.assert_array_equal(labels_only(out)["case1.nii.gz"], got["case1.nii.gz"])

    # --num-parts: the parts together hold every case once, postprocessed
    parts = tmp_path / "parts"
    for i in range(2):
        ok(tmp_path / "nowhere", "predict", "--model", str(zip_path), "-i", str(images), "-o", str(parts),
           "--num-parts", "2", "--part-id", str(i), "--continue", *FAST)
    assert sorted(p.name for p in parts.iterdir()) == sorted(got)
    for name, seg in labels_only(parts).items():
        np.testing.assert_array_equal(seg, got[name], err_msg=name)

    # --rules replaces the package's rules: class 5 alone
    other = tmp_path / "class5.json"
    write_rules(other, Rules([0, 1, 5], classes=[5]))
    out2 = tmp_path / "pp5"
    text = ok(tmp_path / "nowhere", "predict", "--model", str(zip_path), "-i", str(images), "-o", str(out2),
              "--rules", str(other), *FAST)
    assert f"postprocessing: largest component of class 5 (from {other})" in text, text
    for name, seg in labels_only(out2).items():
        np.testing.assert_array_equal(seg, Rules([0, 1, 5], classes=[5]).apply(raw[name]), err_msg=name)


def test_foreign_rules_refused(packaged, tmp_path):
    root, images, zip_path, _, rules_file = packaged
    wrong = tmp_path / "wrong.json"
    write_rules(wrong, Rules([0, 1, 2], all_foreground=True))
    out = tmp_path / "out"
    code, text = cli(tmp_path / "nowhere", "predict", "--model", str(zip_path), "-i", str(images), "-o", str(out),
                     "--rules", str(wrong), *FAST)
    assert code == 2 and str(wrong) in text and "[0, 1, 2]" in text and "[0, 1, 5]" in text, text
    assert not out.exists()
    # export refuses rules for other labels (at find-best's place or given), nothing written
    write_rules(rules_file, Rules([0, 1, 2], all_foreground=True))
    code, text = cli(root, "export-model", DATASET, "unet", "-c", "3d_fullres", "-o", str(tmp_path / "x.zip"))
    assert code == 2 and str(rules_file) in text and "[0, 1, 5]" in text, text
    assert not (tmp_path / "x.zip").exists()
    text = ok(root, "export-model", DATASET, "unet", "-c", "3d_fullres", "-o", str(tmp_path / "y.zip"),
              "--no-postprocessing")
    assert "left out" in text
    with zipfile.ZipFile(tmp_path / "y.zip") as z:
        assert "postprocessing.json" not in z.namelist()
        assert json.loads(z.read(MANIFEST))["postprocessing"] is None


@pytest.mark.parametrize("kind", ["changed_byte", "malformed_rehashed", "foreign_labels_rehashed"])
def test_tampered_rules_in_package_refused(packaged, tmp_path, kind):
    root, images, zip_path, _, _ = packaged
    with zipfile.ZipFile(zip_path) as z:
        data = z.read("postprocessing.json")
    if kind == "changed_byte":
        spec, needle = (data.replace(b"true", b"fals", 1), False), "postprocessing.json does not match its SHA-256"
    elif kind == "malformed_rehashed":
        spec, needle = (b'{"format": "salseg-postprocessing/1"}', True), "postprocessing.json: field 'label_values'"
    else:
        rules = json.loads(data)
        rules["label_values"] = [0, 1, 2]
        spec, needle = (json.dumps(rules).encode(), True), "postprocessing.json: postprocessing rules for label"
    bad = _rewrite(zip_path, tmp_path / f"{kind}.zip", change=("postprocessing.json", *spec))
    fresh, out = tmp_path / "fresh", tmp_path / "out"
    for args in (["install-model", str(bad)], ["predict", "--model", str(bad), "-i", str(images), "-o", str(out),
                                               *FAST]):
        code, text = cli(fresh, *args)
        assert code == 2 and needle in text, text
        assert len(text.strip().splitlines()) == 1 and text.startswith("error:"), text
    assert not fresh.exists() and not out.exists()


def test_install_restores_rules_where_find_best_writes_them(packaged, tmp_path):
    root, images, zip_path, raw, rules_file = packaged
    fresh = tmp_path / "fresh"
    text = ok(fresh, "install-model", str(zip_path))
    placed = results.postprocessing_file(fresh, DATASET, *EXP)
    assert placed.read_bytes() == rules_file.read_bytes()
    assert f"--rules {placed}" in text, text
    # dataset-based predict applies rules only when asked (as nnU-Net): raw without --rules, postprocessed with
    out, out_pp = tmp_path / "ds", tmp_path / "ds_pp"
    ok(fresh, "predict", DATASET, "-n", "unet", "-c", "3d_fullres", "-i", str(images), "-o", str(out), *FAST)
    ok(fresh, "predict", DATASET, "-n", "unet", "-c", "3d_fullres", "-i", str(images), "-o", str(out_pp),
       "--rules", str(placed), *FAST)
    got, got_pp = labels_only(out), labels_only(out_pp)
    for name, seg in raw.items():
        np.testing.assert_array_equal(got[name], seg, err_msg=name)
        np.testing.assert_array_equal(got_pp[name], keep_largest_foreground(seg), err_msg=name)
    # other rules already at that place: refused before anything is written
    fresh2 = tmp_path / "fresh2"
    other = results.postprocessing_file(fresh2, DATASET, *EXP)
    write_rules(other, Rules([0, 1, 5], classes=[1]))
    code, text = cli(fresh2, "install-model", str(zip_path))
    assert code == 2 and str(other) in text, text
    assert not results.experiment_dir(fresh2, DATASET, *EXP).exists()


def test_no_postprocessing_without_a_package_is_refused(packaged, tmp_path):
    """A prediction from DATASET applies rules only with --rules: --no-postprocessing there would do nothing, so it is
    refused (exit 2, nothing written) rather than silently accepted."""
    root, images, _, _, _ = packaged
    out = tmp_path / "out"
    code, text = cli(root, "predict", DATASET, "unet", "-c", "3d_fullres", "-i", str(images), "-o", str(out),
                     "--no-postprocessing", *FAST)
    assert code == 2 and "--no-postprocessing turns off a package's rules" in " ".join(text.split()), text
    assert not out.exists()
