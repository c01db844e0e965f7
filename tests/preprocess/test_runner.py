"""preprocess_dataset: outputs, skip on re-run, --force, atomicity, parallel == serial, CLI."""

import os

import numpy as np
import pytest
from typer.testing import CliRunner

from salseg.fileio import read_json, read_npz
from salseg.plan import plan_dataset
from salseg.preprocess import preprocess_dataset

from tests.plan.rawdata_helpers import blob_case, write_raw_dataset


@pytest.fixture
def planned(tmp_path):
    rng = np.random.default_rng(0)
    cases = [blob_case(f"case{i}", (8, 24 + 2 * i, 26), (4.0, 1.0, 1.2), rng) for i in range(3)]
    write_raw_dataset(tmp_path, "Tiny", cases)
    plan_dataset(tmp_path, "Tiny")
    return tmp_path, cases


def _outputs(root, ident):
    folder = root / "preprocessed" / "Dataset001_Tiny" / ident
    return sorted(p.name for p in folder.iterdir())


def test_outputs_skip_and_force(planned):
    root, cases = planned
    s = preprocess_dataset(root, "Tiny")
    assert s["processed"] == 6 and s["skipped"] == 0 and set(s["data_identifiers"]) == {"2d", "3d_fullres"}
    for ident in ("2d", "3d_fullres"):
        assert _outputs(root, ident) == sorted(f"case{i}{e}" for i in range(3) for e in (".npz", ".json"))
    folder = root / "preprocessed" / "Dataset001_Tiny" / "3d_fullres"
    arr = read_npz(folder / "case0.npz")
    props = read_json(folder / "case0.json")
    assert arr["data"].dtype == np.float32 and arr["seg"].dtype == np.int16
    assert list(arr["data"].shape[1:]) == list(arr["seg"].shape) == props["shape_after_resample"]
    assert set(np.unique(arr["seg"])) <= {-1, 0, 1, 2}
    mtime = os.stat(folder / "case0.npz").st_mtime_ns
    s2 = preprocess_dataset(root, "Tiny")
    assert s2["processed"] == 0 and s2["skipped"] == 6
    assert os.stat(folder / "case0.npz").st_mtime_ns == mtime
    (folder / "case1.json").unlink()         # an unfinished case is redone
    s3 = preprocess_dataset(root, "Tiny", configs=["3d_fullres"])
    assert s3["processed"] == 1
    s4 = preprocess_dataset(root, "Tiny", configs=["3d_fullres"], force=True)
    assert s4["processed"] == 3


def test_crash_mid_write_leaves_no_partial_file(planned, monkeypatch):
    root, _ = planned
    real = np.savez
    calls = {"n": 0}

    def crashing_savez(file, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            with open(file, "wb") as f:     # half a file, then the "crash"
                f.write(b"PK\x03\x04partial")
            raise KeyboardInterrupt
        return real(file, *args, **kwargs)

    monkeypatch.setattr(np, "savez", crashing_savez)
    with pytest.raises(KeyboardInterrupt):
        preprocess_dataset(root, "Tiny", configs=["3d_fullres"])
    names = _outputs(root, "3d_fullres")
    assert names == ["case0.json", "case0.npz"]          # finished case kept, nothing half-written
    monkeypatch.setattr(np, "savez", real)
    s = preprocess_dataset(root, "Tiny", configs=["3d_fullres"])
    assert s["processed"] == 2 and s["skipped"] == 1


def test_parallel_equals_serial(planned, tmp_path):
    root, _ = planned
    preprocess_dataset(root, "Tiny", configs=["2d"], num_workers=2)
    folder = root / "preprocessed" / "Dataset001_Tiny" / "2d"
    par = {f: read_npz(folder / f) for f in ("case0.npz", "case2.npz")}
    par_json = read_json(folder / "case2.json")
    preprocess_dataset(root, "Tiny", configs=["2d"], force=True)
    for f, arrs in par.items():
        ser = read_npz(folder / f)
        assert all(np.array_equal(ser[k], arrs[k]) for k in ("data", "seg"))
    assert read_json(folder / "case2.json") == par_json


def test_cli_preprocess(planned):
    from salseg_cli.main import app

    root, _ = planned
    r = CliRunner().invoke(app, ["--root", str(root), "preprocess", "Tiny", "-c", "2d", "3d_fullres"])
    assert r.exit_code == 0, r.output
    assert "6 case file(s) written" in r.output.replace("\n", " ")
    r = CliRunner().invoke(app, ["--root", str(root), "preprocess", "Tiny", "-c", "3d_lowres"])
    assert r.exit_code != 0 and "3d_lowres" in r.output
