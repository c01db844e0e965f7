import logging

from salseg.plan.splits import make_splits, validate_splits


def _cases(n_patients, frames=2):
    cases = [f"p{p:02d}_f{f}" for p in range(n_patients) for f in range(frames)]
    return cases, {c: c.split("_")[0] for c in cases}


def test_grouped_complete_deterministic():
    cases, groups = _cases(12)
    s = make_splits(cases, groups, seed=3)
    assert len(s) == 5
    assert validate_splits(s, cases, groups) == []
    for fold in s:
        assert sorted(fold["train"] + fold["val"]) == sorted(cases)
        assert {groups[c] for c in fold["val"]}.isdisjoint({groups[c] for c in fold["train"]})
    assert make_splits(cases, groups, seed=3) == s
    assert make_splits(list(reversed(cases)), groups, seed=3) == s
    assert make_splits(cases, groups, seed=4) != s
    sizes = [len(f["val"]) for f in s]
    assert max(sizes) - min(sizes) <= 2


def test_fewer_groups_than_folds(caplog):
    cases, groups = _cases(3)
    with caplog.at_level(logging.WARNING):
        s = make_splits(cases, groups, seed=0)
    assert len(s) == 3 and "3 folds" in caplog.text
    assert validate_splits(s, cases, groups) == []


def test_single_case(caplog):
    with caplog.at_level(logging.WARNING):
        s = make_splits(["only"], seed=0)
    assert s == [{"train": ["only"], "val": ["only"]}]
    assert "single fold" in caplog.text


def test_validate_detects_split_group():
    cases, groups = _cases(2)
    bad = [{"train": ["p00_f1", "p01_f0", "p01_f1"], "val": ["p00_f0"]},
           {"train": ["p00_f0"], "val": ["p00_f1", "p01_f0", "p01_f1"]}]
    assert any("split over folds" in p for p in validate_splits(bad, cases, groups))
