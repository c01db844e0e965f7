"""Run configs of region / ignore datasets: num_classes = regions, label_spec recorded; diffusion refuses them."""

import dataclasses
import json

import pytest
from torch import nn

from salseg.dataset.labels import parse_labels
from salseg.errors import ConfigError
from salseg.nets.capabilities import Capabilities
from salseg.run.config import RunConfig
from salseg.train.protocol import attach_protocol
from salseg.train.resolve import finish_model_config

REGIONS = parse_labels({"background": 0, "wt": [1, 2, 3], "tc": [2, 3], "et": [3], "ignore": 4}, [1, 2, 3], "d")

BASE = {"dataset": "Dataset902_SynthBraTS", "network": "unet", "module": "none", "config": "2d", "fold": 0,
        "plans": {"dim": 2, "patch_size": [32, 32]}, "label_values": [0, 1, 2, 3], "in_channels": 4,
        "num_classes": 3, "dim": 2, "mode": "2d", "neighbours": 1, "data_identifier": "2d",
        "file_ending": ".nii.gz", "epochs": 1, "iters_per_epoch": 1, "batch_size": 2, "patch_size": [32, 32],
        "lr": 0.01, "optimizer": "sgd", "weight_decay": 3e-5, "label_spec": REGIONS.to_json()}


class _Net(nn.Module):
    def __init__(self, **caps):
        super().__init__()
        self.capabilities = Capabilities(**caps)


def test_region_config_round_trip_and_checks(tmp_path):
    cfg = RunConfig.from_dict(json.loads(json.dumps(BASE)))
    assert cfg.labels == REGIONS and cfg.labels.num_outputs == 3
    cfg.save(tmp_path / "config.json")
    assert RunConfig.load(tmp_path / "config.json").labels == REGIONS
    with pytest.raises(ConfigError, match="'num_classes' is 4 but the run has 3 regions"):
        RunConfig.from_dict({**BASE, "num_classes": 4}, "x/config.json")
    with pytest.raises(ConfigError, match="x/config.json: field .label_spec"):
        RunConfig.from_dict({**BASE, "label_spec": {**REGIONS.to_json(), "ignore": 2}}, "x/config.json")
    plain = RunConfig.from_dict({**BASE, "label_spec": {}, "num_classes": 4})   # older config.json: classes
    assert not plain.labels.has_regions and plain.labels.num_outputs == 4


def test_protocol_names_regions_and_ignore():
    cfg = RunConfig.from_dict(BASE)
    loss = attach_protocol(cfg, diffusion=False).protocol["loss"]
    assert loss["name"] == "bce+soft_dice" and loss["regions"] == [[1, 2, 3], [2, 3], [3]] and loss["ignore_label"] == 4
    plain = RunConfig.from_dict({**BASE, "label_spec": {}, "num_classes": 4})
    assert "ignore_label" not in attach_protocol(plain, diffusion=False).protocol["loss"]


def test_diffusion_refuses_regions_and_ignore():
    cfg = RunConfig.from_dict(BASE)
    assert finish_model_config(cfg, _Net()).labels == REGIONS
    with pytest.raises(ConfigError, match="diffusion model: it denoises a one-hot class mask and cannot train on "
                                          "regions"):
        finish_model_config(cfg, _Net(diffusion=True))
    sparse = parse_labels({"background": 0, "a": 1, "ignore": 2}, None, "d")
    cfg = dataclasses.replace(cfg, label_values=[0, 1], num_classes=2, label_spec=sparse.to_json())
    with pytest.raises(ConfigError, match=r"an ignore label \(2\)"):
        finish_model_config(cfg, _Net(diffusion=True))
