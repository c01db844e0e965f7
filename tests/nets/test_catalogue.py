"""salseg.nets.catalogue and salseg.plan.catalogue: the records behind `salseg list`, checked against the registry."""

import json

import pytest

from salseg.plan.catalogue import KINDS, dataset_records, preset_records, records
from salseg.errors import ConfigError
from salseg.nets import registry
from salseg.nets.catalogue import module_records, network_records, position_records


def test_networks_and_modules_list_exactly_the_valid_pairs():
    nets = registry.networks()
    valid = {(n, m) for n, e in nets.items() for m in registry.modules()
             if any(registry.invalid_reason(n, m, d) is None for d in e.dims)}
    by_net = {(r["name"], m) for r in network_records() for m in r["modules"]}
    by_mod = {(n, r["name"]) for r in module_records() for n in r["networks"]}
    assert by_net == by_mod == valid
    assert ("mtunet", "lstmsa") in valid and ("unet", "reca") not in valid
    assert [r["name"] for r in network_records()] == sorted(nets)
    assert not any(r["plugin"] for r in network_records())  # every built-in comes from salseg


def test_positions_and_presets():
    from salseg.nets.modules.positions import DEFAULT_POSITION, POSITIONS

    pos = position_records()
    assert [r["name"] for r in pos] == list(POSITIONS) and [r["name"] for r in pos if r["default"]] == \
        [DEFAULT_POSITION] and all(r["description"] for r in pos)
    presets = preset_records()
    assert {r["option"] for r in presets if r["network"] is None} >= {"plan --preset default"}
    assert {r["name"] for r in presets if r["network"] == "medsegdiff"} >= {"paper", "official-b"}


def test_datasets_under_a_root(tmp_path):
    raw = tmp_path / "raw"
    (raw / "Dataset501_Good").mkdir(parents=True)
    (raw / "Dataset501_Good" / "dataset.json").write_text(json.dumps(
        {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "femur": 1}, "numTraining": 3,
         "file_ending": ".nii.gz"}))
    (raw / "Dataset502_Broken").mkdir()
    (raw / "Dataset502_Broken" / "dataset.json").write_text("{not json")
    recs = {r["name"]: r for r in dataset_records(tmp_path)}
    assert recs["Dataset501_Good"]["cases"] == 3 and recs["Dataset501_Good"]["labels"] == {"background": 0,
                                                                                           "femur": 1}
    assert recs["Dataset501_Good"]["planned"] is False
    assert "Dataset502_Broken" in recs["Dataset502_Broken"]["problem"] or "dataset.json" in \
        recs["Dataset502_Broken"]["problem"]
    assert records("datasets", tmp_path) == dataset_records(tmp_path)


def test_unknown_kind():
    assert KINDS == ("networks", "modules", "positions", "datasets", "presets")
    with pytest.raises(ConfigError, match="salseg list takes one of"):
        records("nets", None)
