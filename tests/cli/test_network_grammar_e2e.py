"""`salseg train ACDC mtunet --module lstmsa` on the ACDC converter's output: no warning, and the same folder and
protocol_hash as the scripts' spelling `-n mtunet` (docs/cli.md, grammar rule 2). A tiny MT-UNet, one iteration."""

from __future__ import annotations

import json
import shutil

import numpy as np
from typer.testing import CliRunner

from salseg_cli.main import app
from tests.e2e.test_acdc_convert_plan import make_acdc
from tests.threads import one_thread  # noqa: F401  (autouse here)

TINY = ["--module", "lstmsa", "--fold", "all", "--epochs", "1", "--iters-per-epoch", "1", "--batch-size", "2",
        "--patch-size", "32", "32", "--device", "cpu", "--workers", "0", "--seed", "0", "-q",
        "--option", "width=8", "heads=2", "img_size=[32,32]", "features=4"]


def _run(root, *args):
    res = CliRunner().invoke(app, ["--root", str(root), *args])
    return res.exit_code, res.output + (res.stderr if res.stderr_bytes else "")


def test_positional_network_trains_without_warning_like_n(tmp_path):
    make_acdc(tmp_path / "src", np.random.default_rng(0))
    first = tmp_path / "a"
    for args in (("convert", "acdc", str(tmp_path / "src")), ("plan", "ACDC", "-c", "2.5d"),
                 ("preprocess", "ACDC", "-c", "2.5d")):
        code, text = _run(first, *args)
        assert code == 0, (args, text)
    second = tmp_path / "b"
    shutil.copytree(first, second)

    code, text = _run(first, "train", "ACDC", "mtunet", *TINY)
    assert code == 0, text
    # no warning at all: not about the network's spelling, and the "plans were sized for unet" line is a note (INFO)
    warnings = [line for line in text.lower().splitlines() if "warning" in line or "deprecated" in line]
    assert warnings == [], text
    code, text_n = _run(second, "train", "ACDC", "-n", "mtunet", *TINY)
    assert code == 0, text_n

    folds = [sorted(p.relative_to(r) for p in (r / "results").glob("*/*/fold_*")) for r in (first, second)]
    assert folds[0] == folds[1] == [folds[0][0]] and folds[0][0].parts[2] == "mtunet__lstmsa__2.5d", folds
    assert folds[0][0].name == "fold_all"
    configs = [json.loads((r / folds[0][0] / "config.json").read_text()) for r in (first, second)]
    assert configs[0]["protocol_hash"] == configs[1]["protocol_hash"]
    assert configs[0]["network"] == "mtunet" and configs[0]["module"] == "lstmsa"
