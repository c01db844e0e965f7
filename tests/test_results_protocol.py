"""Seed-aware fold folder names (salseg.results) and the protocol fingerprint helpers (salseg.protocol)."""

import hashlib
import json

import pytest

from salseg import results as R
from salseg.protocol import canonical_json, describe_diff, protocol_diff, protocol_hash


def test_seed_zero_keeps_the_plain_fold_folder():
    assert R.fold_name(0) == "fold_0"
    assert R.fold_name(3, seed=0) == "fold_3"
    assert R.fold_name("all", seed=2) == "fold_all_seed2"
    assert R.fold_name(1, seed=7) == "fold_1_seed7"
    with pytest.raises(ValueError):
        R.fold_name(0, seed=-1)


@pytest.mark.parametrize("name,parsed", [("fold_0", (0, 0)), ("fold_4_seed2", (4, 2)), ("fold_all", ("all", 0)),
                                         ("fold_all_seed11", ("all", 11)), ("fold_0_seed0", None),
                                         ("fold_x", None), ("fold_1_seed", None), ("validation", None)])
def test_parse_fold_name_inverts_fold_name(name, parsed):
    assert R.parse_fold_name(name) == parsed
    if parsed:
        assert R.fold_name(*parsed) == name


def test_fold_dir_with_seed(tmp_path):
    d = R.fold_dir(tmp_path, "Dataset901_X", "unet", "lstmsa", "2.5d", 0, seed=2)
    assert d == tmp_path / "results" / "Dataset901_X" / "unet__lstmsa__2.5d" / "fold_0_seed2"


def test_protocol_hash_is_sha256_of_sorted_compact_json():
    p = {"lr": 0.01, "epochs": 2, "patch_size": [64, 64]}
    want = hashlib.sha256(json.dumps(p, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert protocol_hash(p) == want
    assert protocol_hash({"epochs": 2, "patch_size": [64, 64], "lr": 0.01}) == want  # key order does not matter
    assert protocol_hash(dict(p, lr=0.02)) != want
    assert canonical_json({"b": 1, "a": [1.5]}) == '{"a":[1.5],"b":1}'


def test_protocol_diff_names_changed_and_missing_fields():
    a = {"lr": 0.01, "epochs": 2, "batch_size": 4}
    b = {"lr": 0.01, "epochs": 3, "momentum": 0.9}
    assert protocol_diff(a, b) == ["batch_size", "epochs", "momentum"]
    assert protocol_diff(a, dict(a)) == []
    line = describe_diff({"none": a, "lstmsa": b})
    assert "epochs (none=2, lstmsa=3)" in line and "batch_size" in line
