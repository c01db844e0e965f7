"""stats compares like with like: RVD as |RVD| (lower is better), per-case means over labels only for results
scored on the same labels (else exit 2 naming both files), summaries written under different empty-mask policies
read under the one --empty policy asked, and the metric directions and provenance text from the catalogue."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from salseg.evaluate import evaluate_arrays
from salseg.evaluate.definitions import CATALOGUE
from salseg.stats import LOWER_IS_BETTER_METRICS
from salseg.stats.load import load_arms
from salseg.stats.provenance import METRIC_IMPLEMENTATION
from salseg.stats.tests import TIE_DISTANCE, default_tie
from salseg_cli.main import app


def _box_cases(width, labels=(1,), drop=None):
    """8 cases: a reference with one 3x10x10 box per label, a prediction whose boxes are ``width(i)`` wide
    (label ``drop`` left out of the prediction of case 0)."""
    out = []
    for i in range(8):
        ref = np.zeros((3, 24, 16 * len(labels)), np.uint8)
        pred = np.zeros_like(ref)
        for j, v in enumerate(labels):
            ref[:, 4:14, 16 * j + 2:16 * j + 12] = v
            if not (i == 0 and v == drop):
                pred[:, 4:14, 16 * j + 2:16 * j + 2 + width(i)] = v
        out.append((f"c{i}", pred, ref, (1.0, 1.0, 1.0)))
    return out


def _run(*args):
    return CliRunner().invoke(app, ["stats", *map(str, args), "--n-boot", "200"])


def test_rvd_is_compared_as_absolute_value_lower_is_better(tmp_path):
    over = tmp_path / "over" / "summary.json"       # RVD +0.3 / +0.4: further from 0
    under = tmp_path / "under" / "summary.json"     # RVD -0.1 / -0.2: closer to 0
    evaluate_arrays(_box_cases(lambda i: 13 + i % 2), [1], metrics=("dice", "rvd"), output=over)
    evaluate_arrays(_box_cases(lambda i: 9 - (i % 3 == 0)), [1], metrics=("dice", "rvd"), output=under)
    arms = load_arms([under, over], "rvd")
    assert arms[0].values["c0"] == pytest.approx(0.2) and arms[1].values["c1"] == pytest.approx(0.4)
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["stats", str(under), str(over), "--metrics", "rvd", "--n-boot", "200",
                                   "--json", str(out)])
    assert res.exit_code == 0, res.output
    rec = json.loads(out.read_text())["records"][0]
    # signed, "over" would look better (+0.35 > -0.13); as |RVD| it is 0.20 worse
    assert rec["metric"] == "|rvd|" and rec["lower_is_better"]
    assert rec["mean_diff"] == pytest.approx(0.35 - 0.1375) and rec["verdict"] == "worse"
    assert "|rvd|" in res.output


def test_different_label_sets_refused_for_all_compared_on_a_common_label(tmp_path):
    three = tmp_path / "three" / "summary.json"
    one = tmp_path / "one" / "summary.json"
    evaluate_arrays(_box_cases(lambda i: 9 + i % 2, (1, 2, 3)), [1, 2, 3], output=three)
    evaluate_arrays(_box_cases(lambda i: 10 - i % 2, (1, 2, 3)), [1], output=one)
    res = _run(three, one)
    assert res.exit_code == 2 and "Traceback" not in res.output
    err = [x for x in res.output.splitlines() if x.startswith("error")]
    assert len(err) == 1, res.output
    assert err[0] == (f"error: {one} and {three} were scored on different labels ({{1}} vs {{1, 2, 3}}); label 'all' "
                      f"would average different structures: compare the labels both have (--labels 1) or re-evaluate "
                      f"both on the same labels")
    res = _run(three, one, "--labels", "1")     # a label both were scored on: compared
    assert res.exit_code == 0, res.output
    assert "dice L1" in res.output and "error" not in res.output


def test_different_empty_policies_are_read_under_the_asked_one(tmp_path):
    cases = _box_cases(lambda i: 9 + i % 2, (1, 2), drop=2)
    ref = tmp_path / "ref" / "summary.json"
    evaluate_arrays(_box_cases(lambda i: 10 - i % 2, (1, 2)), [1, 2], output=ref)
    worst, nan = tmp_path / "worst" / "summary.json", tmp_path / "nan" / "summary.json"
    evaluate_arrays(cases, [1, 2], output=worst, empty="worst")
    evaluate_arrays(cases, [1, 2], output=nan, empty="nan")
    assert json.loads(nan.read_text())["empty_policy"] == "nan"
    for policy in ("worst", "nan"):
        a = load_arms([ref, worst], "hd95", "2", policy)[1].values
        b = load_arms([ref, nan], "hd95", "2", policy)[1].values
        assert a == pytest.approx(b, nan_ok=True)
    assert load_arms([ref, nan], "hd95", "2", "worst")[1].values["c0"] == pytest.approx(np.sqrt(3**2 + 24**2 + 32**2))
    outs = []
    for other in (worst, nan):
        res = CliRunner().invoke(app, ["stats", str(ref), str(other), "--metrics", "hd95", "--n-boot", "200",
                                       "--json", str(tmp_path / "r.json")])
        assert res.exit_code == 0, res.output
        outs.append(json.loads((tmp_path / "r.json").read_text())["records"][0]["mean_diff"])
    assert outs[0] == pytest.approx(outs[1])


def test_directions_tie_and_provenance_come_from_the_catalogue():
    assert LOWER_IS_BETTER_METRICS == {m.name for m in CATALOGUE if m.lower_is_better or m.signed}
    assert LOWER_IS_BETTER_METRICS == {"hd", "hd95", "hd95_mr", "assd", "masd", "rvd"}
    assert all(default_tie(m) == TIE_DISTANCE for m in ("hd", "hd95", "hd95_mr", "assd", "masd"))
    assert default_tie("rvd") != TIE_DISTANCE and default_tie("dice") != TIE_DISTANCE
    for m in CATALOGUE:
        assert f"{m.key}: " in METRIC_IMPLEMENTATION
    assert "{" not in METRIC_IMPLEMENTATION


def test_folds_of_one_experiment_must_be_scored_on_the_same_labels(tmp_path):
    from salseg.errors import DataError
    from salseg.stats.load import load_result

    exp = tmp_path / "results" / "Dataset001_X" / "unet__none__2d"
    cases = _box_cases(lambda i: 9 + i % 2, (1, 2))
    evaluate_arrays(cases[:4], [1, 2], output=exp / "fold_0" / "validation" / "summary.json")
    evaluate_arrays(cases[4:], [1], output=exp / "fold_1" / "validation" / "summary.json")
    with pytest.raises(DataError, match=r"fold_1/validation/summary.json: scored on labels \{1\}, .*fold_0.* on "
                                        r"\{1, 2\}; re-evaluate the folds with the same labels"):
        load_result(exp)
    assert len(load_result(exp, label="1").values) == 8       # label 1 is in both folds


def test_rvd_from_a_cases_csv_or_a_table_is_compared_as_absolute_value(tmp_path):
    from salseg.stats import analyse_cases, analyse_table

    under = [-0.1, -0.2, -0.1, -0.1, -0.2, -0.1, -0.1, -0.2]
    over = [0.3, 0.4, 0.3, 0.4, 0.3, 0.4, 0.35, 0.3]
    rows = ["case,method,metric,value"] + [f"c{i},{m},{name},{v}" for name in ("rvd", "|RVD|")
                                           for m, vals in (("under", under), ("over", over))
                                           for i, v in enumerate(vals)]
    (tmp_path / "c.csv").write_text("\n".join(rows[:17]) + "\n")
    (tmp_path / "c2.csv").write_text("\n".join(rows[:1] + rows[17:]) + "\n")
    for f in ("c.csv", "c2.csv"):
        rec = analyse_cases(tmp_path / f, n_boot=200)["records"][0]
        assert rec["metric"] == "|rvd|" and rec["lower_is_better"] and rec["verdict"] == "worse"
        assert rec["mean_diff"] == pytest.approx(np.mean(over) - np.mean(np.abs(under)))
    table = ["dataset,baseline,method,value"] + [f"D,b{i},{m},{v}" for m, vals in (("none", under), ("x", over))
                                                 for i, v in enumerate(vals)]
    (tmp_path / "t.csv").write_text("\n".join(table) + "\n")
    rec = analyse_table(tmp_path / "t.csv", metric="rvd", n_boot=200)["records"][0]
    assert rec["metric"] == "|rvd|" and rec["mean_diff"] == pytest.approx(np.mean(over) - np.mean(np.abs(under)))
