"""Issue 11's done-when grid through the CLI, shrunk to seconds of training: a 6-case synthetic dataset, unet with
none / stack / lstmsa in 2.5d, fold 0, seeds 0 and 1 -> 6 trained runs, results.csv with 6 rows and a seed column,
one protocol_hash across the six config.json, deep supervision on in all six, and a table comparing lstmsa with
both none and stack. Slow (six real trainings with validation exports: minutes on 2 shared cores)."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from salseg import results as R
from salseg_cli.main import app

MODULES = ("none", "stack", "lstmsa")


def _run(args):
    res = CliRunner().invoke(app, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


@pytest.mark.slow
def test_done_when_grid(tmp_path):
    r = str(tmp_path)
    _run(["--root", r, "synth", "--cases", "6"])
    _run(["--root", r, "plan", "SynthACDC", "--configs", "2.5d"])
    _run(["--root", r, "preprocess", "SynthACDC"])
    out = _run(["--root", r, "bench", "run", "SynthACDC", "--networks", "unet", "--modules", *MODULES,
                "--config", "2.5d", "--folds", "0", "--seeds", "0", "1", "--epochs", "1", "--iters-per-epoch", "1",
                "--batch-size", "2", "--width", "4", "-o", "features=4", "--no-efficiency", "-q", "--name", "fair"])
    assert "trained 6, skipped 0 finished, 0 failed" in out
    ds = "Dataset901_SynthACDC"
    configs = {}
    for module in MODULES:
        for seed in (0, 1):
            d = R.fold_dir(tmp_path, ds, "unet", module, "2.5d", 0, seed=seed)
            assert (d / R.CHECKPOINT_FINAL).is_file() and (d / R.VALIDATION_DIR / R.SUMMARY_JSON).is_file()
            configs[(module, seed)] = json.loads((d / R.CONFIG_JSON).read_text())
    assert all(c["seed"] == seed for (_, seed), c in configs.items())
    assert len({c["protocol_hash"] for c in configs.values()}) == 1
    assert all(c["deep_supervision"] is True for c in configs.values())
    bench = R.bench_dir(tmp_path, "fair")
    with open(bench / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(row["module"], row["seed"]) for row in rows] == [(m, s) for m in MODULES for s in ("0", "1")]
    stats = json.loads((bench / "bench.json").read_text())["stats"]
    assert sorted((s["method"], s["reference"]) for s in stats) == [
        ("unet__lstmsa__2.5d", "unet__none__2.5d"), ("unet__lstmsa__2.5d", "unet__stack__2.5d"),
        ("unet__stack__2.5d", "unet__none__2.5d")]
    md = (bench / "table.md").read_text()
    assert "Verdict vs none" in md and "Verdict vs stack" in md and "Protocol: every arm" in md
    (lstmsa,) = [line for line in md.splitlines() if line.startswith("| unet | lstmsa |")]
    verdicts = [c.strip() for c in lstmsa.strip("|").split("|")][-3::2]
    assert all(v not in ("–", "reference") for v in verdicts)
