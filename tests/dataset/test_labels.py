"""dataset.json labels as nnU-Net v2 defines them: classes, regions + regions_class_order, an ignore label."""

import json
import logging

import numpy as np
import pytest

from salseg.dataset.dataset_json import load_dataset_json, parse_dataset_json
from salseg.dataset.labels import LabelSpec, label_spec_of, missing_region_values, parse_labels
from salseg.errors import ConfigError

# nnU-Net's documentation/region_based_training.md (BraTS) -- "enhancing_tumor": 3 or [3]
NNUNET_BRATS_REGIONS = {
    "channel_names": {"0": "T1", "1": "T1ce", "2": "T2", "3": "Flair"},
    "labels": {"background": 0, "whole_tumor": [1, 2, 3], "tumor_core": [2, 3], "enhancing_tumor": 3},
    "regions_class_order": [1, 2, 3], "numTraining": 1251, "file_ending": ".nii.gz",
}
# nnU-Net's documentation/ignore_label.md: plain labels with an ignore label, and regions with one
NNUNET_IGNORE = {
    "channel_names": {"0": "T1"},
    "labels": {"background": 0, "edema": 1, "non_enhancing_and_necrosis": 2, "enhancing_tumor": 3, "ignore": 4},
    "numTraining": 1, "file_ending": ".nii.gz",
}
NNUNET_IGNORE_REGIONS = {
    "channel_names": {"0": "T1"},
    "labels": {"background": 0, "whole_tumor": [1, 2, 3], "tumor_core": [2, 3], "enhancing_tumor": [3],
               "ignore": 4},
    "regions_class_order": [1, 2, 3], "numTraining": 1, "file_ending": ".nii.gz",
}


def test_nnunet_brats_regions_read_as_is(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps(NNUNET_BRATS_REGIONS))
    info = load_dataset_json(tmp_path)
    spec = info.label_spec
    assert spec.has_regions and spec.ignore is None
    assert spec.regions == ((1, 2, 3), (2, 3), (3,))
    assert spec.region_names == ("whole_tumor", "tumor_core", "enhancing_tumor")
    assert spec.regions_class_order == (1, 2, 3)
    assert spec.label_values == (0, 1, 2, 3) and info.label_values == [0, 1, 2, 3]
    assert spec.num_outputs == 3 == info.num_classes
    assert info.to_json()["regions_class_order"] == [1, 2, 3]          # written back unchanged
    assert parse_dataset_json(info.to_json(), "again").label_spec == spec


def test_nnunet_ignore_label_read(tmp_path):
    spec = parse_dataset_json(NNUNET_IGNORE, "d.json").label_spec
    assert not spec.has_regions and spec.ignore == 4
    assert spec.label_values == (0, 1, 2, 3) and spec.num_outputs == 4
    assert spec.allowed_values == [0, 1, 2, 3, 4]
    spec = parse_dataset_json(NNUNET_IGNORE_REGIONS, "d.json").label_spec
    assert spec.has_regions and spec.ignore == 4 and spec.regions[2] == (3,) and spec.num_outputs == 3


def test_region_masks_and_paint_back():
    spec = parse_dataset_json(NNUNET_BRATS_REGIONS, "d").label_spec
    seg = np.array([[0, 1, 2], [3, 2, 1]])
    masks = spec.region_masks(seg)
    expected = np.array([[[0, 1, 1], [1, 1, 1]], [[0, 0, 1], [1, 1, 0]], [[0, 0, 0], [1, 0, 0]]], bool)
    np.testing.assert_array_equal(masks, expected)
    np.testing.assert_array_equal(spec.regions_to_labels(masks), seg)   # nested regions paint back exactly


def test_spec_json_round_trip_and_old_plans():
    for d in (NNUNET_BRATS_REGIONS, NNUNET_IGNORE, NNUNET_IGNORE_REGIONS):
        spec = parse_dataset_json(d, "d").label_spec
        assert LabelSpec.from_json(json.loads(json.dumps(spec.to_json())), "p") == spec
        assert label_spec_of({"label_spec": spec.to_json(), "label_values": list(spec.label_values)}) == spec
    old = label_spec_of({"label_values": [0, 1, 3], "labels": {"background": 0, "a": 1, "b": 3}})
    assert old == LabelSpec((0, 1, 3), ("background", "a", "b"))


@pytest.mark.parametrize("labels,order,message", [
    ({"background": 0, "wt": [1, 2]}, None, "'regions_class_order' is missing"),
    ({"background": 0, "a": 1}, [1], "no label is a region"),
    ({"background": 0, "wt": [1, 2], "tc": [2]}, [2, 2], "overlapping entries"),
    ({"background": 0, "wt": [1, 2], "tc": [2]}, [1], "one label value per region"),
    ({"background": 0, "a": 1, "ignore": 1}, None, "must be the largest"),
    ({"background": 0, "a": 1, "b": 5, "ignore": 3}, None, "must be the largest"),
    ({"background": 0, "wt": [1, 2, 3], "tc": [2, 3], "ignore": 2}, [1, 2], "must be the largest"),
    ({"background": 0, "wt": [1, 2], "ignore": [3]}, [1], "one integer value"),
    ({"background": 0, "wt": [1, 2], "tc": [2, 1]}, [1, 2], "are the same values"),
    ({"background": 0, "wt": [0, 2], "tc": [2]}, [1, 2], "may not contain background"),
    ({"background": 0, "wt": [1, 1]}, [1], "repeats a value"),
    ({"background": 0, "wt": []}, [1], "at least one label value"),
    ({"wt": [1, 2], "tc": [2]}, [1, 2], "background = 0"),
])
def test_bad_labels_refused_naming_file_and_field(labels, order, message):
    with pytest.raises(ConfigError, match=message) as e:
        parse_labels(labels, order, "/data/Dataset1_X/dataset.json")
    assert str(e.value).startswith("/data/Dataset1_X/dataset.json: field '")
    assert "\n" not in str(e.value)


def test_class_order_outside_its_region_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="salseg"):
        parse_labels({"background": 0, "wt": [1, 2], "tc": [2]}, [1, 3], "x/dataset.json")
    assert "x/dataset.json" in caplog.text and "not one of its values" in caplog.text


def test_missing_region_values():
    spec = parse_dataset_json(NNUNET_BRATS_REGIONS, "d").label_spec
    assert missing_region_values(spec, {"0": 10, "1": 4, "2": 3, "3": 0}) == [("whole_tumor", 3), ("tumor_core", 3),
                                                                             ("enhancing_tumor", 3)]
    assert missing_region_values(spec, {0: 1, 1: 1, 2: 1, 3: 1}) == []
