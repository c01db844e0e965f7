"""The run config's resolution (salseg.train.resolve): one pure function applies user > CPU recipe > network recipe >
plans, checked here on hand-made inputs (no files) against the values written out by hand; later changes are new,
logged configs; TrainSettings is frozen and says what the user set; a Trainer variant overrides one stage."""

from __future__ import annotations

import copy
import dataclasses
import logging

import pytest
from torch import nn

from salseg.errors import ConfigError
from salseg.plans import read_plans
from salseg.run import RunConfig
from salseg.train import Trainer, TrainSettings, train
from salseg.train.config import DEFAULT_EPOCHS, DEFAULT_ITERS, DEFAULT_LR, DEFAULT_VAL_EVERY, DEFAULT_WD
from salseg.train.cpu_defaults import CPU_RECIPE
from salseg.train.resolve import RunInputs, resolve_run_config, revise

from tests.train.conftest import TINY


def inputs(tiny_root, *, device="cuda", recipe=None, network="mtunet") -> RunInputs:
    plans = read_plans(tiny_root / "preprocessed" / "Dataset901_Tiny" / "plans.json")
    return RunInputs(dataset="Dataset901_Tiny", network=network, plans=plans,
                     configuration=plans.configuration("2d").to_dict(), recipe=dict(recipe or {}), fixed_size=None,
                     divisor=1, slice_module=False, file_ending=".nii.gz", device=device, world_size=1,
                     default_workers=3)


def test_precedence_user_cpu_recipe_plans(tiny_root):
    """Planned batch 12, patch 32x32; a recipe with batch 8, adam, lr 5e-4, momentum 0.9."""
    recipe = {"optimizer": "adam", "lr": 5e-4, "batch_size": 8, "momentum": 0.9, "nesterov": False}
    plain = TrainSettings("Tiny", "mtunet")
    # GPU: the recipe over the plans and defaults
    cfg, notes = resolve_run_config(plain, inputs(tiny_root, recipe=recipe))
    assert (cfg.batch_size, cfg.optimizer, cfg.lr, cfg.momentum, cfg.nesterov) == (8, "adam", 5e-4, 0.9, False)
    assert cfg.weight_decay == DEFAULT_WD["adam"] and (cfg.epochs, cfg.iters_per_epoch) == (DEFAULT_EPOCHS,
                                                                                          DEFAULT_ITERS)
    assert cfg.patch_size == [32, 32] and cfg.val_every == DEFAULT_VAL_EVERY and cfg.workers == 3
    assert cfg.configuration["batch_size_reason"] == "the network's recipe"
    assert cfg.cpu_defaults_applied == {} and not notes
    # no recipe: the plans, and lr / weight decay follow the optimizer
    cfg, _ = resolve_run_config(plain, inputs(tiny_root))
    assert (cfg.batch_size, cfg.optimizer, cfg.lr, cfg.weight_decay) == (12, "sgd", DEFAULT_LR["sgd"],
                                                                         DEFAULT_WD["sgd"])
    assert cfg.configuration["batch_size_reason"] == "planned (plans)"
    # CPU: the CPU recipe's caps over the recipe (batch 8 -> 4); mtunet keeps its own optimizer and lr
    cfg, notes = resolve_run_config(plain, inputs(tiny_root, device="cpu", recipe=recipe))
    assert (cfg.batch_size, cfg.optimizer, cfg.lr) == (CPU_RECIPE.batch_size, "adam", 5e-4)
    assert (cfg.epochs, cfg.iters_per_epoch) == (CPU_RECIPE.epochs, CPU_RECIPE.iters_per_epoch)
    assert cfg.cpu_defaults_applied == {"batch_size": 4, "iters_per_epoch": CPU_RECIPE.iters_per_epoch,
                                        "epochs": CPU_RECIPE.epochs, "recipe": CPU_RECIPE.name}
    assert cfg.configuration["batch_size_reason"] == "CPU default"
    assert [lvl for lvl, _ in notes] == [logging.INFO] and "CPU-sized defaults" in notes[0][1]
    # the user over everything
    mine = TrainSettings("Tiny", "mtunet", batch_size=6, lr=0.2, optimizer="sgd", epochs=3, iters_per_epoch=5,
                         val_every=2, workers=0)
    cfg, _ = resolve_run_config(mine, inputs(tiny_root, device="cpu", recipe=recipe))
    assert (cfg.batch_size, cfg.lr, cfg.optimizer, cfg.epochs, cfg.iters_per_epoch) == (6, 0.2, "sgd", 3, 5)
    assert (cfg.val_every, cfg.workers, cfg.weight_decay) == (2, 0, DEFAULT_WD["sgd"])
    assert cfg.configuration["batch_size_reason"] == "set by the user" and "batch_size" not in cfg.cpu_defaults_applied


def test_resolution_is_pure_and_refuses_bad_values(tiny_root):
    src = inputs(tiny_root, device="cpu", network="unet")
    before = copy.deepcopy(src)
    settings = TrainSettings("Tiny", "unet", patch_size=(16, 16))
    a, notes_a = resolve_run_config(settings, src)
    b, notes_b = resolve_run_config(settings, src)
    assert a == b and notes_a == notes_b and src == before  # same answer, inputs untouched, nothing logged
    assert a.patch_size == [16, 16] and a.configuration["patch_size"] == [16, 16]  # retopologised for the smaller patch
    with pytest.raises(ConfigError, match="unknown optimizer 'lion'"):
        resolve_run_config(TrainSettings("Tiny", "unet", optimizer="lion"), src)
    with pytest.raises(ConfigError, match="has 3 axes; 2d needs 2"):
        resolve_run_config(TrainSettings("Tiny", "unet", patch_size=(8, 16, 16)), src)


def test_settings_are_frozen_and_say_what_was_given():
    s = TrainSettings("Tiny", "unet", epochs=2, patch_size=[32, 32], options={"features": 4})
    assert s.given() == {"epochs": 2, "patch_size": [32, 32], "options": {"features": 4}, "position": "head",
                         "plans_name": "plans", "deep_supervision": True}
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.epochs = 3
    assert s.replace(module="lstmsa").module == "lstmsa" and s.module == "none"
    with pytest.raises(ConfigError, match="time budget must be a positive number"):
        TrainSettings("Tiny", time_budget=0)


def test_revise_makes_a_new_config_and_logs_the_step(tiny_root, caplog):
    cfg, _ = resolve_run_config(TrainSettings("Tiny", "unet"), inputs(tiny_root, network="unet"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 5
    with caplog.at_level(logging.DEBUG, logger="salseg.train.resolve"):
        new = revise(cfg, "time budget", epochs=7)
    assert new.epochs == 7 and cfg.epochs == DEFAULT_EPOCHS and isinstance(new, RunConfig)
    assert f"config step time budget: epochs {DEFAULT_EPOCHS} -> 7" in caplog.text
    assert revise(new, "nothing", epochs=7) is new  # no change: the same config


def test_a_trainer_variant_overrides_one_stage(tiny_root):
    """A subclass replaces the loss (nnU-Net style); every iteration goes through it, the rest is the same."""
    calls = []

    class CountingLoss(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, outputs, target):
            calls.append(1)
            return self.inner(outputs, target)

    class Variant(Trainer):
        def build_loss(self):
            return CountingLoss(super().build_loss())

    out = train(tiny_root, TrainSettings("Tiny", "unet", **{**TINY, "epochs": 2, "iters_per_epoch": 3}),
                trainer=Variant)
    assert len(calls) == 6 and (out / "checkpoint_final.pt").is_file()
    assert RunConfig.load(out / "config.json").epochs == 2
