"""stats refuses to pair results whose metric definitions differ (naming them), reads a summary.json with a
non-number value as one line naming the file and key, and knows which of evaluate's metrics are distances."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from salseg.errors import DataError
from salseg.evaluate import evaluate_arrays
from salseg.stats import LOWER_IS_BETTER_METRICS
from salseg.stats.load import load_arms
from salseg_cli.main import app


def _cases(shift):
    out = []
    for i in range(6):
        ref = np.zeros((5, 16, 16), np.uint8)
        ref[1:4, 3 + i % 3:11, 4:12] = 1
        out.append((f"c{i}", np.roll(ref, shift + i % 2, axis=2), ref, (2.0, 0.7, 0.7)))
    return out


def _write(tmp_path, name, shift, **kw):
    path = tmp_path / name / "summary.json"
    evaluate_arrays(_cases(shift), [1], output=path, **kw)
    return path


def test_refuses_different_definitions_naming_both(tmp_path):
    a = _write(tmp_path, "a", 0, nsd_tolerance=1.0)
    b = _write(tmp_path, "b", 1, nsd_tolerance=2.0)
    with pytest.raises(DataError, match="NSD is defined differently in b .*tolerance 2 mm.* and in a "):
        load_arms([a, b], "nsd")
    assert len(load_arms([a, b], "dice")) == 2          # Dice is defined alike: paired
    res = CliRunner().invoke(app, ["stats", str(a), str(b), "--metrics", "nsd"])
    assert res.exit_code == 2 and "defined differently" in res.output and "Traceback" not in res.output
    # a summary that records no definitions (nnU-Net's, or an older salseg's) is not checked
    s = json.loads(b.read_text())
    del s["metric_definitions"]
    b.write_text(json.dumps(s))
    assert len(load_arms([a, b], "nsd")) == 2


def test_hd95_definitions_medpy_vs_metrics_reloaded(tmp_path):
    a = _write(tmp_path, "a", 0)
    b = _write(tmp_path, "b", 1)
    s = json.loads(b.read_text())
    s["metric_definitions"]["HD95"] = s["metric_definitions"]["HD95_MR"]   # as if HD95 were Metrics Reloaded's
    b.write_text(json.dumps(s))
    with pytest.raises(DataError, match="HD95 is defined differently"):
        load_arms([a, b], "hd95")
    assert len(load_arms([a, b], "hd95_mr")) == 2


def test_non_number_value_names_file_and_key(tmp_path):
    a = _write(tmp_path, "a", 0)
    b = _write(tmp_path, "b", 1)
    s = json.loads(b.read_text())
    s["metric_per_case"][2]["metrics"]["1"]["Dice"] = "0.9x"
    b.write_text(json.dumps(s))
    res = CliRunner().invoke(app, ["stats", str(a), str(b)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert str(b) in res.output.replace("\n", "") and "'Dice' is not a number" in res.output
    s["metric_per_case"][2]["metrics"]["1"]["Dice"] = [0.9]
    b.write_text(json.dumps(s))
    with pytest.raises(DataError, match="'Dice' is not a number"):
        load_arms([a, b], "dice")


def test_distances_are_lower_is_better():
    assert {"hd", "hd95", "hd95_mr", "assd", "masd"} <= LOWER_IS_BETTER_METRICS
    assert not {"dice", "nsd", "boundary_iou", "cldice", "pq", "f1"} & LOWER_IS_BETTER_METRICS
