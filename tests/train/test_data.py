"""Patch sampler, augmentation workers, losses and checkpoint RNG state: checked against direct computations."""

from __future__ import annotations

import multiprocessing
import random

import numpy as np
import pytest
import torch

from salseg.train.augment import build_transforms, epoch_batches
from salseg.run.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from salseg.train.data import Case, PatchSampler, crop_pad
from salseg.train.losses import DeepSupervisionLoss, DiceCELoss, deep_supervision_weights, soft_dice_loss


def _case(shape=(6, 20, 20), c=2, fg=((3, 10, 10),)):
    data = np.arange(c * np.prod(shape), dtype=np.float32).reshape(c, *shape)
    seg = np.zeros(shape, np.int16)
    for loc in fg:
        seg[loc] = 1
    return Case("c", data, seg, {}, {1: np.asarray(fg)})


def test_crop_pad_matches_padded_slicing():
    a = np.arange(5 * 7, dtype=np.float32).reshape(5, 7)
    padded = np.pad(a, ((3, 9), (3, 9)), constant_values=-9)
    for starts in ([-2, -1], [0, 0], [3, 4], [-3, 5]):
        got = crop_pad(a, starts, (6, 4), -9)
        assert np.array_equal(got, padded[starts[0] + 3:starts[0] + 9, starts[1] + 3:starts[1] + 7])


def test_2p5d_neighbours_clamped_and_centre_label():
    case = _case()
    s = PatchSampler([case], (20, 20), 1, "2.5d", neighbours=3, oversample=1.0)
    d, seg = s.sample_one(np.random.default_rng(0), force_fg=True)  # fg voxel at z=3 -> slices 2,3,4
    assert d.shape == (3, 2, 20, 20) and seg.shape == (1, 20, 20)
    assert np.array_equal(d, case.data[:, [2, 3, 4]].transpose(1, 0, 2, 3))
    assert seg[0, 10, 10] == 1
    edge = _case(fg=((0, 5, 5),))
    d, _ = PatchSampler([edge], (20, 20), 1, "2.5d", 5, 1.0).sample_one(np.random.default_rng(0), True)
    assert np.array_equal(d, edge.data[:, [0, 0, 0, 1, 2]].transpose(1, 0, 2, 3))


def test_small_case_is_padded_and_foreground_oversampled():
    case = _case(shape=(4, 10, 12), fg=((1, 2, 3), (2, 8, 9)))
    s = PatchSampler([case], (16, 16), 6, "2d", oversample=1 / 3)
    b = s.sample(np.random.default_rng(1))
    assert b["data"].shape == (6, 2, 16, 16) and b["seg"].shape == (6, 1, 16, 16)
    # padding: every patch holds the whole 10x12 slice, the rest is data 0 / seg -1
    assert np.all((b["seg"] == -1).sum(axis=(1, 2, 3)) == 16 * 16 - 10 * 12)
    assert s.n_fg == 2 and np.all((b["seg"][-2:] == 1).any(axis=(1, 2, 3)))
    b3 = PatchSampler([case], (8, 8, 8), 2, "3d").sample(np.random.default_rng(2))
    assert b3["data"].shape == (2, 2, 8, 8, 8) and b3["seg"].shape == (2, 1, 8, 8, 8)
    again = PatchSampler([case], (16, 16), 6, "2d").sample(np.random.default_rng(1))
    assert np.array_equal(again["data"], b["data"])  # seeded


def test_workers_deterministic_and_never_left_behind():
    case = _case(shape=(6, 24, 24))
    s = PatchSampler([case], (16, 16), 2, "2.5d", 3)
    tr = build_transforms((16, 16), 2)
    with epoch_batches(s, tr, 4, [0, 0, 0], workers=0) as it:
        a = [b["data"] for b in it]
    assert len(a) == 4 and a[0].shape == (2, 3, 2, 16, 16)
    with epoch_batches(s, tr, 4, [0, 0, 0], workers=0) as it:
        assert all(torch.equal(x, y) for x, y in zip(a, [b["data"] for b in it]))
    with pytest.raises(KeyboardInterrupt):
        with epoch_batches(s, tr, 50, [0, 0, 0], workers=2) as it:
            next(it)
            assert len(multiprocessing.active_children()) == 2
            raise KeyboardInterrupt
    assert multiprocessing.active_children() == []


def test_losses_against_direct_computation():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 1, 8, 8))
    p = torch.softmax(logits, 1)
    oh = torch.nn.functional.one_hot(target[:, 0], 3).permute(0, 3, 1, 2).float()
    dice = [(2 * (p[:, c] * oh[:, c]).sum() + 1e-5) / (p[:, c].sum() + oh[:, c].sum() + 1e-5) for c in (1, 2)]
    assert torch.allclose(soft_dice_loss(logits, target), 1 - (dice[0] + dice[1]) / 2, atol=1e-6)
    ce = torch.nn.functional.cross_entropy(logits, target[:, 0])
    assert torch.allclose(DiceCELoss()(logits, target), 0.5 * ce + 0.5 * (1 - (dice[0] + dice[1]) / 2), atol=1e-6)
    w = deep_supervision_weights(3)
    assert np.allclose(w, np.array([1, 0.5, 0.25]) / 1.75)
    low = torch.randn(2, 3, 4, 4)
    ds = DeepSupervisionLoss(DiceCELoss())([logits, low], target)
    expect = w[0] * 0 + (1 / 1.5) * DiceCELoss()(logits, target) + (0.5 / 1.5) * DiceCELoss()(low, target[..., ::2, ::2])
    assert torch.allclose(ds, expect, atol=1e-6)
    assert torch.isfinite(DiceCELoss()(logits, torch.full((2, 1, 8, 8), -1)))  # -1 = outside crop -> background


def test_checkpoint_rng_roundtrip_weights_only(tmp_path):
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    state = rng_state()
    expect = (torch.rand(3), np.random.rand(3), random.random())
    save_checkpoint(tmp_path / "c.pt", model={"w": torch.ones(2)}, rng=state, best_dice=None, epoch=1)
    ck = load_checkpoint(tmp_path / "c.pt")  # weights_only=True inside
    set_rng_state(ck["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expect[0], got[0]) and np.array_equal(expect[1], got[1]) and expect[2] == got[2]
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary left


def test_cpu_defaults_only_where_user_did_not_set():
    from salseg.train.cpu_defaults import cpu_defaults, describe

    s = {"batch_size": 15, "patch_size": [160, 200], "iters_per_epoch": 250, "epochs": 1000, "options": {}}
    ch = cpu_defaults(s, set(), 2, network="unet", slice_module=True)
    assert ch == {"batch_size": (15, 4), "patch_size": ([160, 200], [128, 128]), "iters_per_epoch": (250, 25),
                  "epochs": (1000, 100), "width": (None, 16), "features": (None, 16),
                  "optimizer": (None, "adam"), "lr": (None, 3e-3), "weight_decay": (None, 1e-4)}
    assert describe(ch).count("\n") == 0 and "batch_size 15->4" in describe(ch)
    user = cpu_defaults(s, {"batch_size", "patch_size", "iters_per_epoch", "epochs", "width", "optimizer", "lr",
                            "weight_decay"}, 2, network="unet")
    assert user == {}
    assert cpu_defaults({**s, "patch_size": [24, 96, 96]}, set(), 3)["patch_size"][1] == [24, 64, 64]
    assert "patch_size" not in cpu_defaults(s, set(), 2, fixed_size=(224, 224))
