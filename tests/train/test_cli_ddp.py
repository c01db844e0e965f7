"""`salseg train` from the command line: DDP with 2 CPU processes (gloo), and clear messages for bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from salseg.run import RunConfig
from salseg_cli.main import app

TINY_ARGS = ["--device", "cpu", "--epochs", "1", "--iters-per-epoch", "2", "--batch-size", "2", "--width", "4",
             "--workers", "0", "--quiet"]


def test_ddp_two_cpu_processes_one_result_folder(tiny_root):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
           "salseg_cli", "--root", str(tiny_root), "train", "Tiny", "unet", "--fold", "2", *TINY_ARGS]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    exp = tiny_root / "results" / "Dataset901_Tiny" / "unet__none__2d"
    assert [p.name for p in exp.iterdir()] == ["fold_2"]
    out = exp / "fold_2"
    cfg = RunConfig.load(out / "config.json")
    assert cfg.world_size == 2
    recs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in recs] == [1]  # written by rank 0 only
    assert (out / "checkpoint_final.pt").is_file() and (out / "validation" / "summary.json").is_file()
    assert proc.stdout.count("results:") == 1  # rank 0 prints


def _run(root, *args):
    return CliRunner().invoke(app, ["--root", str(root), "train", *args])


@pytest.mark.parametrize("args, expect", [
    (["Nope", "unet"], "unknown dataset 'Nope'"),
    (["Tiny", "nonet"], "unknown network 'nonet'"),
    (["Tiny", "unet", "--config", "4d"], "unknown configuration '4d'"),
    (["Tiny", "unet", "--module", "lstmsa", "--config", "3d_fullres"], "invalid pair unet + lstmsa (3D)"),
    (["Tiny", "unet", "--fold", "7"], "fold 7 does not exist"),
    (["Tiny", "unet", "--optimizer", "rmsprop"], "unknown optimizer 'rmsprop'"),
    (["Tiny", "unet", "--continue"], "nothing to continue"),
    (["Tiny", "unet", "--option", "width"], "--option expects KEY=VALUE"),
])
def test_bad_input_clear_message(tiny_root, args, expect):
    res = _run(tiny_root, *args, *TINY_ARGS)
    assert res.exit_code != 0
    assert expect in " ".join(res.output.split()), res.output
    assert "Traceback" not in res.output
    assert not (tiny_root / "results").exists()


def test_missing_plans_and_preprocessed_data(tiny_root):
    pre = tiny_root / "preprocessed" / "Dataset901_Tiny"
    shutil.rmtree(pre / "2d")
    res = _run(tiny_root, "Tiny", "unet", *TINY_ARGS)
    assert res.exit_code != 0 and "no preprocessed data" in res.output and "salseg preprocess" in res.output
    (pre / "plans.json").unlink()
    res = _run(tiny_root, "Tiny", "unet", *TINY_ARGS)
    assert res.exit_code != 0 and "no plans found" in res.output and "salseg plan" in res.output


def test_config_json_validation_names_file_and_field(tmp_path, tiny_root):
    res = _run(tiny_root, "Tiny", "unet", *TINY_ARGS)
    assert res.exit_code == 0, res.output
    path = tiny_root / "results" / "Dataset901_Tiny" / "unet__none__2d" / "fold_0" / "config.json"
    data = json.loads(path.read_text())
    bad = tmp_path / "config.json"
    for field, value, msg in [("optimizer", "lion", "field 'optimizer' must be one of"),
                              ("batch_size", "8", "field 'batch_size' must be int"),
                              ("label_values", [0, 1], "field 'label_values' has 2 values")]:
        bad.write_text(json.dumps({**data, field: value}))
        with pytest.raises(Exception) as e:
            RunConfig.load(bad)
        assert str(bad) in str(e.value) and msg in str(e.value)
    bad.write_text(json.dumps({k: v for k, v in data.items() if k != "network"}))
    with pytest.raises(Exception, match="missing field 'network'"):
        RunConfig.load(bad)
