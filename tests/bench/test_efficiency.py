"""`salseg bench efficiency`: records against independent counts (numel, FLOP formulas), % increases, skips."""

import json

import pytest
import torch
from typer.testing import CliRunner

from salseg.bench.efficiency import count_flops, measure_efficiency
from salseg.nets import build
from salseg_cli.app import expand_multi_values
from salseg_cli.main import app

S, FEAT = 16, 8


def test_cli_records(tmp_path):
    out = tmp_path / "eff.json"
    args = ["bench", "efficiency", "--network", "unet", "--modules", "none", "salstm", "lstmsa", "lstm",
            "--classes", "2", "--size", str(S), "--repeats", "1", "--threads", "1",
            "-o", "width=2", "-o", f"features={FEAT}", "--json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "salstm" in result.output and "GFLOPs" in result.output
    recs = {r["module"]: r for r in json.loads(out.read_text())}
    assert list(recs) == ["none", "salstm", "lstmsa", "lstm"]
    for module, r in recs.items():
        assert r["network"] == "unet" and r["skipped"] is None and r["latency_ms"] > 0
        opts = {} if module == "none" else {"features": FEAT}  # unet refuses the heads' option
        model = build("unet", module, in_channels=1, num_classes=2, width=2, patch_size=(S, S), **opts)
        assert r["params"] == sum(p.numel() for p in model.parameters())
        assert r["macs"] * 2 == r["flops"]
        for key in ("params", "flops", "latency_ms"):
            base = recs["none"][key]
            assert r[f"{key}_increase_pct"] == pytest.approx(100 * (r[key] - base) / base)
    assert recs["none"]["input_shape"] == [1, 1, S, S] and recs["salstm"]["input_shape"] == [1, 3, 1, S, S]
    # independent FLOP formulas (FLOPs = 2 x MACs): SA-LSTM = ConvLSTM-only + 2 directions x 2 bmm (C x C x HW);
    # LSTM-SA adds 2 directions x 3 1x1 convs (C x C x HW)
    hw = S * S
    assert recs["salstm"]["flops"] - recs["lstm"]["flops"] == 2 * 2 * 2 * FEAT * FEAT * hw
    assert recs["lstmsa"]["flops"] - recs["salstm"]["flops"] == 2 * 3 * 2 * FEAT * FEAT * hw
    # the ConvLSTM: 4 steps (2 per direction) of a (2C -> 4C, 5x5) conv, plus the 2C -> classes 1x1 output conv
    backbone = build("unet", in_channels=1, num_classes=FEAT, width=2, patch_size=(S, S), deep_supervision=False)
    bb = count_flops(backbone.eval(), torch.randn(3, 1, S, S))
    assert recs["lstm"]["flops"] == bb + 4 * 2 * (2 * FEAT) * (4 * FEAT) * 25 * hw + 2 * (2 * FEAT) * 2 * hw


def test_invalid_pairs_are_skipped_and_reported():
    recs = measure_efficiency("unet", ["none", "salstm"], num_classes=2, sizes=[8], dim=3, repeats=1, warmup=0,
                              options={"width": 2}, num_threads=1)
    assert recs[0]["skipped"] is None and recs[0]["input_shape"] == [1, 1, 8, 8, 8]
    assert "2D backbone" in recs[1]["skipped"] and recs[1]["params"] is None
    assert recs[1]["params_increase_pct"] is None


def test_cli_bad_input_is_one_clear_line():
    result = CliRunner().invoke(app, ["bench", "efficiency", "--network", "nope", "--classes", "2", "--size", "8"])
    assert result.exit_code != 0 and "unknown network 'nope'" in result.output
    assert "Traceback" not in result.output


def test_space_separated_values_expand():
    assert expand_multi_values(["--modules", "a", "b", "--size", "1", "2", "--json", "x"], ("--modules", "--size")) == \
        ["--modules", "a", "--modules", "b", "--size", "1", "--size", "2", "--json", "x"]
