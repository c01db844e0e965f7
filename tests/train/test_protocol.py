"""The protocol fingerprint in config.json: equal for arms of one network that differ only in the module,
different as soon as the recipe differs."""

from __future__ import annotations

import dataclasses
import json

from salseg.protocol import protocol_diff, protocol_hash
from salseg.run import RunConfig
from salseg.train import TrainSettings, train
from salseg.train.augment import augmentation_params
from salseg.train.cpu_defaults import CPU_RECIPE
from salseg.train.protocol import build_protocol

from tests.train.conftest import TINY
from tests.train.test_deep_supervision import four_stages


def test_arms_share_hash_and_recipe_changes_it(tiny_root):
    four_stages(tiny_root)  # deep supervision applies to every arm
    none = RunConfig.load(train(tiny_root, TrainSettings("Tiny", "unet", "none", config="2.5d",
                                                         **TINY)) / "config.json")
    lstmsa = RunConfig.load(train(tiny_root, TrainSettings("Tiny", "unet", "lstmsa", config="2.5d",
                                                           **TINY)) / "config.json")
    stack = RunConfig.load(train(tiny_root, TrainSettings("Tiny", "unet", "stack", config="2.5d",
                                                          **TINY)) / "config.json")
    assert none.deep_supervision and lstmsa.deep_supervision and stack.deep_supervision
    assert stack.protocol_hash == none.protocol_hash, protocol_diff(none.protocol, stack.protocol)
    raw = json.loads((tiny_root / "results" / "Dataset901_Tiny" / "unet__lstmsa__2.5d" / "fold_0" /
                      "config.json").read_text())
    assert raw["protocol_hash"] == protocol_hash(raw["protocol"]) == lstmsa.protocol_hash
    assert none.mode == "2d" and lstmsa.mode == "2.5d" and "features" in lstmsa.options  # the arms differ...
    # ...the recipe does not
    assert none.protocol_hash == lstmsa.protocol_hash, protocol_diff(none.protocol, lstmsa.protocol)
    p = none.protocol
    assert (p["network"], p["dataset"], p["config"]) == ("unet", "Dataset901_Tiny", "2.5d")
    assert "module" not in p and "position" not in p and "seed" not in p and "features" not in json.dumps(p)
    assert p["augmentation"] == augmentation_params(none.patch_size, 2).to_dict()
    assert (p["lr"], p["epochs"], p["batch_size"], p["patch_size"]) == (CPU_RECIPE.lr, 1, 2, [32, 32])  # CPU recipe
    assert p["network_options"] == {"width": 4} and p["deep_supervision"] is True
    assert p["loss"]["weight_ce"] == p["loss"]["weight_dice"] == 0.5 and p["salseg_version"]
    # the same recipe built again (another seed, fold, module position or module option) hashes the same
    again = dataclasses.replace(lstmsa, seed=3, fold=2, options={**lstmsa.options, "features": 8, "level": 1})
    assert protocol_hash(build_protocol(again)) == none.protocol_hash
    for change in (dict(lr=0.02), dict(epochs=2), dict(batch_size=3), dict(momentum=0.9), dict(patch_size=[16, 32]),
                   dict(deep_supervision=False), dict(options={"width": 8}), dict(device="cuda"),
                   dict(cpu_defaults_applied={"epochs": 100})):
        other = build_protocol(dataclasses.replace(none, **change))
        assert protocol_hash(other) != none.protocol_hash, change
        assert protocol_diff(other, none.protocol)
    assert build_protocol(none, time_budget=300)["time_budget"] == 300.0 and "time_budget" not in p
    budget = dataclasses.replace(none, time_budget=300.0)  # a time-budget field on the config is read too
    assert build_protocol(budget)["time_budget"] == 300.0


def test_time_budget_is_part_of_the_protocol(tiny_root):
    out = train(tiny_root, TrainSettings("Tiny", "unet", time_budget=600.0, **TINY))
    cfg = RunConfig.load(out / "config.json")
    assert cfg.protocol["time_budget"] == 600.0 and cfg.protocol_hash == protocol_hash(cfg.protocol)


def test_old_config_json_without_protocol_loads(tiny_root):
    out = train(tiny_root, TrainSettings("Tiny", "unet", **TINY))
    data = json.loads((out / "config.json").read_text())
    for k in ("protocol", "protocol_hash"):
        del data[k]
    cfg = RunConfig.from_dict(data)
    assert cfg.protocol == {} and cfg.protocol_hash == ""


def test_sgd_nesterov_follows_the_network_recipe(tiny_root):
    """unet's recipe is SGD with Nesterov momentum; Swin-Unet's published one is plain momentum 0.9 (no Nesterov):
    the optimizer and the protocol follow the recipe."""
    import torch

    from salseg.train.trainer import make_optimizer

    cfg = json.loads((train(tiny_root, TrainSettings("Tiny", "unet", config="2d", fold=0, optimizer="sgd", **TINY))
                      / "config.json").read_text())
    assert cfg["nesterov"] is True and cfg["protocol"]["nesterov"] is (cfg["optimizer"] == "sgd")
    run = RunConfig.from_dict(cfg)
    p = [torch.nn.Parameter(torch.zeros(1))]
    swin = dataclasses.replace(run, network="swinunet", optimizer="sgd", momentum=0.9, nesterov=False)
    group = make_optimizer(swin, p).param_groups[0]
    assert group["nesterov"] is False and group["momentum"] == 0.9
    assert build_protocol(swin)["nesterov"] is False
    assert make_optimizer(dataclasses.replace(swin, nesterov=True), p).param_groups[0]["nesterov"] is True
