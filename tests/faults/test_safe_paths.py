"""Fault 4: a path built from a field of config.json, plans, splits or dataset.json must not leave its folder."""

import json
from pathlib import Path

import pytest

from salseg import results as R
from salseg.errors import ConfigError
from salseg.safepath import inside
from tests.faults.helpers import DS, NAME, cli, one_line_error

BAD = ["/../../escape.nii.gz", "..", "/abs/x.nii.gz", "a/b.nii.gz", "a\\b", ".nii.gz/..", ""]


def _fold(root: Path) -> Path:
    return R.fold_dir(root, DS, "unet", "none", "2d", 0)


def _edit(path: Path, **fields):
    d = json.loads(path.read_text())
    d.update(fields)
    path.write_text(json.dumps(d))


def _no_escape(root: Path):
    assert not list(root.parent.rglob("escape*")), list(root.parent.rglob("escape*"))


@pytest.mark.parametrize("single_file", [True, False])
@pytest.mark.parametrize("ending", BAD[:4])
def test_config_file_ending_cannot_escape(trained_root, tmp_path, single_file, ending):
    root = trained_root
    _edit(_fold(root) / R.CONFIG_JSON, file_ending=ending)
    img = R.raw_dir(root, DS) / "imagesTr" / "case0_0000.nii.gz"
    out = tmp_path / "a" / "b" / "out"
    r = cli("predict", "-i", img if single_file else img.parent, "-o", out, "-d", NAME, "-n", "unet", "-c", "2d",
            "--device", "cpu", "-q", root=root)
    assert r.exit_code == 2, r.output
    line = one_line_error(r)
    assert "config.json" in line and "file_ending" in line
    _no_escape(tmp_path)
    assert not out.exists()


@pytest.mark.parametrize("field", ["data_identifier", "dataset", "network", "module"])
@pytest.mark.parametrize("value", ["../x", "/abs", "..", "a/b"])
def test_config_name_fields(trained_root, field, value):
    _edit(_fold(trained_root) / R.CONFIG_JSON, **{field: value})
    img = R.raw_dir(trained_root, DS) / "imagesTr" / "case0_0000.nii.gz"
    r = cli("predict", "-i", img, "-o", trained_root / "out", "-d", NAME, "-n", "unet", "-c", "2d",
            "--device", "cpu", "-q", root=trained_root)
    assert r.exit_code == 2, r.output
    assert field in one_line_error(r)


@pytest.mark.parametrize("value", ["../case0", "/tmp/case0", "a/b", ".."])
def test_split_case_ids(trained_root, value):
    path = R.splits_file(trained_root, DS)
    splits = json.loads(path.read_text())
    splits[0]["train"][0] = value
    path.write_text(json.dumps(splits))
    r = cli("train", NAME, "unet", "-c", "2d", "-f", "0", "--device", "cpu", "--epochs", "1", "--overwrite", "-q",
            root=trained_root)  # --overwrite: past the finished run's refusal, to the splits check
    assert r.exit_code == 2, r.output
    line = one_line_error(r)
    assert "splits.json" in line and "case id" in line


@pytest.mark.parametrize("value", ["../2d", "/abs", "a/b", ".."])
def test_plans_data_identifier(planned_root, value):
    path = R.plans_file(planned_root, DS)
    plans = json.loads(path.read_text())
    plans["configurations"]["2d"]["data_identifier"] = value
    path.write_text(json.dumps(plans))
    r = cli("preprocess", NAME, "-c", "2d", root=planned_root)
    assert r.exit_code == 2, r.output
    assert "data_identifier" in one_line_error(r)


@pytest.mark.parametrize("field,value", [("file_ending", e) for e in BAD] + [
    ("groups", {"../case0": "p0"}), ("groups", {"a/b": "p0"}), ("groups", {"..": "p0"})])
def test_dataset_json_path_fields(planned_root, field, value):
    _edit(R.raw_dir(planned_root, DS) / "dataset.json", **{field: value})
    for cmd in ("check", "plan", "preprocess"):
        r = cli(cmd, NAME, root=planned_root)
        assert r.exit_code == 2, (cmd, r.output)
        assert "Traceback" not in r.output
        assert field in r.output and "dataset.json" in r.output, r.output


def test_inside_guard(tmp_path):
    assert inside(tmp_path, tmp_path / "a.nii.gz") == tmp_path / "a.nii.gz"
    for bad in ("../a.nii.gz", "x/../../a", "/etc/passwd"):
        with pytest.raises(ConfigError, match="leave its folder"):
            inside(tmp_path, tmp_path / bad)
    (tmp_path / "link").symlink_to(tmp_path.parent)
    with pytest.raises(ConfigError):
        inside(tmp_path, tmp_path / "link" / "a")


@pytest.mark.parametrize("field,value", [("data_identifier", "../../x"), ("file_ending", "/../e.nii.gz"),
                                         ("dataset", "/abs")])
def test_checkpoint_config_fields(trained_root, field, value):
    """--continue rebuilds the run from the checkpoint's own config: its path fields are checked too."""
    from salseg.run.checkpoint import load_checkpoint, save_checkpoint

    latest = _fold(trained_root) / R.CHECKPOINT_LATEST  # kept: the fixture trains with --keep-latest
    ckpt = load_checkpoint(latest)
    ckpt["config"][field] = value
    save_checkpoint(latest, **ckpt)
    r = cli("train", NAME, "unet", "-c", "2d", "-f", "0", "--continue", "--device", "cpu", "-q", root=trained_root)
    assert r.exit_code == 2, r.output
    line = one_line_error(r)
    assert "checkpoint_latest.pt" in line and field in line, line
