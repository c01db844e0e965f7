"""Every table renders complete at 80 columns and in a pipe: no cell cut ('…'), no line over the width, or, when
even the short headers do not fit, CSV-like rows (never a vertical block per row)."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

from salseg_cli.commands.bench_efficiency import efficiency_table
from salseg_cli.commands.bench_robustness import robustness_table
from salseg_cli.commands.evaluate import summary_table, thresholds_table
from salseg_cli.commands.plan import plans_table
from salseg_cli.commands.stats import arms_table, ranking_table, records_table
from salseg_cli.commands.stats import tests_table as p_values_table
from salseg_cli.main import app
from salseg_cli.tables import PIPE_WIDTH, Column, TableData, print_hint, print_markdown, print_table, print_wrapped


def _render(draw, width=80) -> str:
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=False, color_system=None)
    draw(console)
    return buf.getvalue()


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def assert_complete(data: TableData, width: int = 80) -> str:
    out = _render(lambda c: print_table(data, c), width)
    assert "…" not in out, out
    if max(len(line) for line in out.splitlines()) > width:  # CSV-like rows: the header line names every column
        assert ",".join(c.header for c in data.columns) in out, out
    flat = _squash(out)
    for row in data.rows:
        for cell in row:
            for line in cell.splitlines():
                assert _squash(line) in flat, (line, out)
    for c in data.columns:  # every header (or its abbreviation, explained in the legend) is shown
        assert _squash(c.header) in flat or (c.short and _squash(c.short) in flat), (c.header, out)
    return out


def _eff_record(module, position, pct, shape=(1, 3, 1, 224, 224)):
    big = 1996.0 * 10 ** 9
    return {"network": "mtunet", "module": module, "position": position, "dim": 2, "size": [224, 224],
            "device": "cpu", "input_shape": list(shape), "params": 79_075_064.0, "flops": big, "macs": big / 2,
            "latency_ms": 2565.8, "flops_amortized": big, "latency_amortized_ms": 12345.6, "skipped": None,
            "params_increase_pct": pct, "flops_increase_pct": 1996.4, "latency_ms_increase_pct": -794.2,
            "flops_amortized_increase_pct": 12.3, "latency_amortized_ms_increase_pct": 7.7}


def test_efficiency_table_fits():
    recs = [_eff_record("none", None, None, (1, 1, 224, 224)), _eff_record("lstmsa-nl", "head", 1.3),
            _eff_record("salstm-nl", "bottleneck", 0.4), _eff_record("sa+lstm", "parallel", 250.0)]
    out = assert_complete(efficiency_table(recs, 10))
    assert "@bottleneck" in out and "K=3" in out and "+1996%" in out


def test_plans_table_fits():
    conf = {"spacing": [10.0, 1.5625, 1.5625], "patch_size": [20, 256, 224], "batch_size": 2,
            "median_shape": [10, 237.5, 208], "pool_op_kernel_sizes": [[1, 2, 2]] * 6,
            "normalization": ["ZScoreNormalization", "CTNormalization"], "use_mask_for_norm": [True, False]}
    plans = {"dataset_name": "Dataset027_ACDC", "num_channels": 2, "label_values": [0, 1, 2, 3],
             "configurations": {"2d": conf, "2.5d": {**conf, "neighbours": 3}, "3d_fullres": conf}}
    assert_complete(plans_table(plans))


def _summary():
    per_label = {"Dice": 0.91234, "IoU": 0.8, "HD95": 123.4567, "ASSD": 12.3, "NSD": 0.99}
    cases = [{"metrics": {"1": {"n_ref": 5}, "2": {"n_ref": 0}}}] * 3
    return {"mean": {"1": per_label, "2": per_label}, "foreground_mean": per_label, "metric_per_case": cases}


def test_evaluate_tables_fit():
    assert_complete(summary_table(_summary(), title="3 case(s), labels [1, 2]",
                                  names={"1": "right ventricle cavity", "2": "myocardium"}))
    assert_complete(thresholds_table({"mean": {"1": {"Dice": 0.5, "IoU": 0.4}},
                                      "foreground_mean": {"Dice": 0.5, "IoU": 0.4}}))


def test_stats_tables_fit():
    rec = {"test": "wilcoxon", "correction": "holm", "metric": "hd95", "label": "3",
           "dataset": "Dataset027_ACDC", "method": "mtunet__lstmsa-nl__2.5d", "reference": "mtunet__none__2.5d",
           "n": 20, "n_nan_dropped": 2, "mean_method": 123.91234, "std_method": 10.0123, "mean_reference": 0.9,
           "std_reference": 0.02, "median_method": 120.5, "iqr_method": 12.25, "mean_diff": -12.0123,
           "ci_low": -40.004, "ci_high": 30.03, "boot_ci_low": -41.5, "boot_ci_high": 29.75, "p_t": 0.000123,
           "p_wilcoxon": 0.0456, "effect_rank_biserial": -0.75, "effect_dz": -1.25, "wins": 12, "ties": 3,
           "losses": 5, "p_corrected": 0.0456, "verdict": "better (significant, large effect)"}
    recs = [rec, {**rec, "method": "mtunet__salstm-nl__2.5d"}]
    for table in (arms_table(recs), p_values_table(recs), records_table(recs)):
        assert_complete(table)
    rank = {"label": "all", "dataset": "Dataset027_ACDC", "metric": "dice", "n_cases": 20, "n_boot": 1000,
            "kendall_tau_median": 0.8, "kendall_tau_p05": 0.5, "methods": ["a__none__2d", "a__lstmsa__2d"],
            "mean": [0.9, 0.91], "rank": [2, 1], "mean_rank": [1.8, 1.2], "p_rank1": [0.2, 0.8]}
    assert_complete(ranking_table(rank))


def test_robustness_table_fits():
    cond = {"name": "gaussian noise std 0.2", "n_cases": 4, "dice": 0.9, "dice_drop": 0.0123, "hd95": 12.3,
            "hd95_increase": 4.56}
    out = {"network": "mtunet", "module": "lstmsa", "config": "2.5d", "folds": ["fold_0", "fold_1"],
           "conditions": [cond, {**cond, "name": "brightness/contrast/gamma jitter"}]}
    assert_complete(robustness_table(out))


def test_bench_run_markdown_tables_fit():
    md = ("## Dataset901_SynthACDC, 2.5d\n\n| network | module | position | folds | seeds | Dice (mean ± sd) | "
          "HD95 (mm) | params (M) | GFLOPs | verdict vs none |\n|---|---|---|---|---|---|---|---|---|---|\n"
          "| mtunet | lstmsa | bottleneck | 0 1 2 3 4 | 0 1 2 | 0.9123 ± 0.0123 | 12.34 ± 1.23 | 79.08 (+1.3%) | "
          "2,565.8 (+794%) | better (p_holm 0.012) |\n\nnote: finished arms reused\n")
    for width in (80, PIPE_WIDTH):
        out = _render(lambda c: print_markdown(md, c), width)
        assert "…" not in out, out
        for cell in ("2,565.8 (+794%)", "better (p_holm 0.012)", "0.9123 ± 0.0123", "note: finished arms reused"):
            assert _squash(cell) in _squash(out), out
    assert '"2,565.8 (+794%)"' in _render(lambda c: print_markdown(md, c), 80)  # CSV-like rows at 80 columns


def _wide(n=12):
    data = TableData("wide", [Column(f"column number {i}", f"c{i}") for i in range(n)], caption="a caption")
    data.add_row(*[f"value-{i}-" + "x" * 12 for i in range(n)])
    data.add_row(*[f"two\nlines, {i}" for i in range(n)])
    return data


def test_a_table_too_wide_even_abbreviated_becomes_csv_rows():
    data = _wide()
    out = _render(lambda c: print_table(data, c))
    lines = out.splitlines()
    assert lines[0] == "wide" and lines[-1] == "a caption", out
    rows = list(csv.reader(lines[1:-1]))  # one line per row, whole (not wrapped), cells quoted where needed
    assert rows == [[c.header for c in data.columns], data.rows[0], [f"two lines, {i}" for i in range(12)]], out
    assert "column number 11:" not in out  # no vertical "header: value" block


def test_in_a_pipe_a_table_may_use_120_columns(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    data = TableData("mid", [Column(f"header {i}") for i in range(9)])
    data.add_row(*[f"value {i}" for i in range(9)])  # about 100 columns wide: a table in a pipe, CSV at 80
    buf = io.StringIO()
    print_table(data, Console(file=buf, color_system=None))  # not a terminal, no width given: a pipe
    out = buf.getvalue()
    assert "┃" in out and 80 < max(len(line) for line in out.splitlines()) <= PIPE_WIDTH, out
    assert "header 0,header 1" in _render(lambda c: print_table(data, c), 80)  # 80 columns: CSV-like rows
    monkeypatch.setenv("COLUMNS", "80")  # the user's COLUMNS wins in a pipe too
    buf = io.StringIO()
    print_table(data, Console(file=buf, color_system=None))
    assert "header 0,header 1" in buf.getvalue()


def test_hints_and_wrapped_records(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    command = "salseg check " + "/very/long/path/" * 12 + "Dataset501_Knee"
    out = _render(lambda c: print_hint(c, "check it with:", command), 80)
    assert out.splitlines() == ["check it with:", f"  {command}"]  # the command whole on its own line
    text = "unet: 2D/3D conv; modules " + " ".join(f"module{i}" for i in range(30)) + " -- a plain U-Net"
    lines = _render(lambda c: print_wrapped(c, text, first="  "), 80).splitlines()
    assert len(lines) > 1 and all(len(line) <= 80 for line in lines)
    assert lines[0].startswith("  unet:") and all(line.startswith("      ") for line in lines[1:])
    assert " ".join(line.strip() for line in lines) == text


def test_short_headers_come_with_a_legend():
    data = TableData("t", [Column("a rather long header name", "short")] + [Column(f"col{i}") for i in range(6)])
    data.add_row("v" * 10, *["1234567"] * 6)
    out = assert_complete(data)
    assert "short = a rather long header name" in out


@pytest.mark.parametrize("kind", ["networks", "modules", "positions", "presets"])
def test_list_fits_and_writes_json(tmp_path, kind):
    path = tmp_path / "l.json"
    res = CliRunner().invoke(app, ["--root", str(tmp_path), "list", kind, "--json", str(path)],
                             env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    assert "…" not in res.output
    records = json.loads(path.read_text())
    assert records and all(r["name"] in res.output for r in records)
    lines = res.output.splitlines()[:-1]  # the last line: "wrote l.json"
    assert all(len(line) <= 80 for line in lines), res.output
    starts = [line for line in lines if not line.startswith("    ")]  # continuation lines are indented
    assert len(starts) == len(records) and all(not line.startswith(" ") for line in starts), res.output
    if kind == "networks":
        unet = next(r for r in records if r["name"] == "unet")
        assert "lstmsa" in unet["modules"] and "reca" not in unet["modules"]  # the valid pairs only
