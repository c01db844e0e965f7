"""Region targets and the losses with an ignore label: hand-made targets, direct formulas, zero gradient."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from salseg.dataset.labels import parse_labels
from salseg.train.losses import DiceCELoss, RegionDiceBCELoss, make_loss
from salseg.train.targets import ignore_index, region_indices, region_targets

BRATS = parse_labels({"background": 0, "wt": [1, 2, 3], "tc": [2, 3], "et": [3], "ignore": 4}, [1, 2, 3], "d")


def test_region_targets_equal_hand_made():
    # label values 0..3 are indices 0..3 here; -1 (outside the crop) and 4 (ignore) are in no region
    seg = torch.tensor([[[[0, 1, 2], [3, -1, 4]]]])
    t = region_targets(seg, region_indices(BRATS))
    hand = torch.tensor([[[[0, 1, 1], [1, 0, 0]], [[0, 0, 1], [1, 0, 0]], [[0, 0, 0], [1, 0, 0]]]], dtype=torch.float32)
    assert torch.equal(t, hand)
    # non-contiguous values: regions refer to positions in label_values
    spec = parse_labels({"background": 0, "organ": [10, 20], "lesion": [20]}, [10, 20], "d")
    assert spec.label_values == (0, 10, 20) and region_indices(spec) == [[1, 2], [2]]
    assert ignore_index(BRATS) == 4 and ignore_index(spec) is None


def _direct_region_loss(logits, seg, mask):
    t = region_targets(seg.clamp_min(0), region_indices(BRATS))
    m = mask[:, None].expand_as(t).float()
    bce = (F.binary_cross_entropy_with_logits(logits, t, reduction="none") * m).sum() / m.sum()
    p = torch.sigmoid(logits) * m
    axes = [0, 2, 3]
    dice = (2 * (p * t * m).sum(axes) + 1e-5) / (p.sum(axes) + (t * m).sum(axes) + 1e-5)
    return 0.5 * bce + 0.5 * (1 - dice.mean())


def test_region_loss_equals_direct_and_ignores():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 6, 6, generator=g)
    seg = torch.randint(0, 5, (2, 1, 6, 6), generator=g)
    loss = RegionDiceBCELoss(region_indices(BRATS), ignore=4)(logits, seg)
    assert torch.allclose(loss, _direct_region_loss(logits, seg, seg[:, 0] != 4), atol=1e-6)
    # changing the logits or the labels only at ignored voxels changes nothing
    other = logits.clone()
    other[(seg == 4).expand_as(other)] = 99.0
    assert torch.equal(RegionDiceBCELoss(region_indices(BRATS), ignore=4)(other, seg), loss)


def test_class_loss_with_ignore_equals_loss_on_labelled_voxels():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 5, 7, generator=g)
    seg = torch.randint(0, 5, (2, 1, 5, 7), generator=g)
    keep = seg[:, 0] != 4
    loss = DiceCELoss(ignore=4)(logits, seg)
    ce = F.cross_entropy(logits.movedim(1, -1)[keep], seg[:, 0][keep])
    probs = torch.softmax(logits, 1).movedim(1, -1)[keep]            # (n, K) over labelled voxels only
    onehot = F.one_hot(seg[:, 0][keep], 4).float()
    dice = (2 * (probs * onehot).sum(0) + 1e-5) / (probs.sum(0) + onehot.sum(0) + 1e-5)
    assert torch.allclose(loss, 0.5 * ce + 0.5 * (1 - dice[1:].mean()), atol=1e-6)
    assert torch.equal(DiceCELoss()(logits, seg.clamp_max(3)), DiceCELoss(ignore=None)(logits, seg.clamp_max(3)))


@pytest.mark.parametrize("spec", [BRATS, parse_labels({"background": 0, "a": 1, "b": 2, "c": 3, "ignore": 4}, None,
                                                      "d")])
def test_gradient_exactly_zero_on_ignored_voxels_at_every_level(spec):
    g = torch.Generator().manual_seed(2)
    seg = torch.randint(0, 4, (2, 1, 8, 8), generator=g)
    seg[:, :, :, :3] = 4                                  # a sparse annotation: three columns unlabelled
    seg[0, 0, 5, 6] = 4
    outs = [torch.randn(2, spec.num_outputs, 8 // 2 ** i, 8 // 2 ** i, generator=g, requires_grad=True)
            for i in range(3)]
    make_loss(spec)(outs, seg).backward()
    for out in outs:
        level = F.interpolate(seg.float(), size=out.shape[2:], mode="nearest").long()
        ignored = (level == 4).expand_as(out)
        assert ignored.any() and (~ignored).any()
        assert torch.count_nonzero(out.grad[ignored]) == 0           # exactly zero, not small
        assert torch.count_nonzero(out.grad[~ignored]) > 0


def test_all_ignored_gives_zero_loss_gradient():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    seg = torch.full((1, 1, 4, 4), 4)
    loss = RegionDiceBCELoss(region_indices(BRATS), ignore=4)(logits, seg)
    loss.backward()
    assert torch.isfinite(loss) and torch.count_nonzero(logits.grad) == 0
    np.testing.assert_allclose(float(loss.detach()), 0.0, atol=1e-6)


def test_output_dice_regions_and_ignore_equal_direct():
    from salseg.train.targets import output_dice, output_keys

    rng = np.random.default_rng(3)
    seg = rng.integers(-1, 5, (4, 9, 9))                                    # -1 outside crop, 4 ignore
    probs = rng.uniform(0, 1, (3, 4, 9, 9)).astype(np.float32)
    got = output_dice(probs, seg, BRATS)
    keep = seg != 4
    for r, vals in enumerate([(1, 2, 3), (2, 3), (3,)]):
        p, t = (probs[r] > 0.5)[keep], np.isin(seg, vals)[keep]
        assert got[r] == pytest.approx(2 * (p & t).sum() / (p.sum() + t.sum()))
    assert output_keys(BRATS) == ["(1, 2, 3)", "(2, 3)", "(3,)"]
    classes = parse_labels({"background": 0, "a": 1, "b": 2, "ignore": 3}, None, "d")
    seg = rng.integers(0, 4, (3, 5, 5))
    logits = rng.normal(size=(3, 3, 5, 5))
    got = output_dice(logits, seg, classes)
    keep, am = seg != 3, logits.argmax(0)
    for c in (1, 2):
        p, t = (am == c)[keep], (seg == c)[keep]
        assert got[c - 1] == pytest.approx(2 * (p & t).sum() / (p.sum() + t.sum()))
    assert output_keys(classes) == ["1", "2"]
