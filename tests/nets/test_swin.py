"""nD Swin machinery and the two Swin networks: geometry against direct loops, shapes, counts, gradients."""

from __future__ import annotations

import itertools

import pytest
import torch

from salseg.errors import SalsegError
from salseg.nets import build, get_network
from salseg.nets.swin import (PatchExpand, PatchMerging, SwinBlock, effective_window, relative_position_index,
                              shift_mask, window_partition, window_reverse)

torch.set_num_threads(1)


@pytest.mark.parametrize("size,window", [((4, 6), (2, 3)), ((4, 2, 6), (2, 2, 3))])
def test_window_partition_matches_loops_and_reverses(size, window):
    x = torch.randn(2, *size, 5)
    w = window_partition(x, window)
    expected = []
    for b in range(2):
        for start in itertools.product(*[range(0, s, k) for s, k in zip(size, window)]):
            block = x[(b, *[slice(s0, s0 + k) for s0, k in zip(start, window)])]
            expected.append(block.reshape(-1, 5))
    assert torch.equal(w, torch.stack(expected))
    assert torch.equal(window_reverse(w, window, size, 2), x)


def test_relative_position_index_2d_matches_swin_formula():
    win = 3
    idx = relative_position_index((win, win), (win, win))
    coords = [(i, j) for i in range(win) for j in range(win)]
    for a, p in enumerate(coords):
        for b, q in enumerate(coords):
            assert idx[a, b] == (p[0] - q[0] + win - 1) * (2 * win - 1) + (p[1] - q[1] + win - 1)
    small = relative_position_index((2, 2), (win, win))  # a smaller window indexes the table centre
    assert small[0, 0] == idx[0, 0] and small.max() < (2 * win - 1) ** 2


def test_shift_mask_separates_regions():
    size, window, shift = (6, 6), (3, 3), (1, 1)
    mask = shift_mask(size, window, shift, "cpu")
    assert mask.shape == (4, 9, 9)
    # direct: label each position of the rolled grid by its region, compare label equality per window
    region = lambda i, n, w, s: 0 if i < n - w else (1 if i < n - s else 2)  # noqa: E731
    for wi, (r0, c0) in enumerate([(0, 0), (0, 3), (3, 0), (3, 3)]):
        pos = [(r0 + i, c0 + j) for i in range(3) for j in range(3)]
        lab = [(region(r, 6, 3, 1), region(c, 6, 3, 1)) for r, c in pos]
        for a in range(9):
            for b in range(9):
                assert mask[wi, a, b] == (0.0 if lab[a] == lab[b] else -100.0)
    assert shift_mask(size, window, (0, 0), "cpu") is None


def test_effective_window_rule():
    assert effective_window((7, 20), (7, 7), (3, 3)) == ((7, 7), (0, 3))
    assert effective_window((4, 4, 9), (7, 7, 7), (3, 3, 3)) == ((4, 4, 7), (0, 0, 3))


def test_block_merging_and_expand_shapes_any_size():
    torch.manual_seed(0)
    blk = SwinBlock(8, 2, (3, 3, 3), shifted=True).eval()
    x = torch.randn(1, 5, 7, 4, 8)  # not multiples of the window: padded inside, cropped back
    assert blk(x).shape == x.shape
    assert PatchMerging(8, 3)(x[:, :4, :6]).shape == (1, 2, 3, 2, 16)
    assert PatchExpand(8, 2)(torch.randn(1, 3, 5, 8)).shape == (1, 6, 10, 4)
    assert PatchExpand(8, 2, scale=4, out_dim=8)(torch.randn(1, 3, 5, 8)).shape == (1, 12, 20, 8)


def test_shifted_block_equals_direct_computation_on_one_window_grid():
    """With a grid of exactly one window the shift is disabled: the block is plain attention over all tokens."""
    torch.manual_seed(0)
    blk = SwinBlock(4, 1, (2, 2), shifted=True).eval()
    x = torch.randn(1, 2, 2, 4)
    h = blk.norm1(x).reshape(4, 4)
    q, k, v = blk.attn.qkv(h).chunk(3, -1)
    bias = blk.attn.relative_position_bias_table[relative_position_index((2, 2), (2, 2)).reshape(-1)].reshape(4, 4)
    att = torch.softmax(q @ k.T * 4 ** -0.5 + bias, -1) @ v
    y = x + blk.attn.proj(att).reshape(1, 2, 2, 4)
    y = y + blk.mlp(blk.norm2(y))
    assert torch.allclose(blk(x), y, atol=1e-6)


def test_swinunet_full_size_count_and_registry_entry():
    entry = get_network("swinunet")
    assert entry.dims == (2,) and entry.divisor == 32 and entry.has_self_attention
    model = build("swinunet", in_channels=1, num_classes=9, dim=2)
    assert sum(p.numel() for p in model.parameters()) == 27_168_900  # Swin-Unet paper: 27.17 M (9 classes)


def test_swinunetr_full_size_count_like_monai():
    entry = get_network("swinunetr")
    assert entry.dims == (3,) and entry.divisor == 32 and entry.has_self_attention
    model = build("swinunetr", in_channels=1, num_classes=14, dim=3)
    assert sum(p.numel() for p in model.parameters()) == 62_187_296  # MONAI SwinUNETR(feature_size=48), BTCV


def _check_all_grads(model, x):
    model.train()
    model(x).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []


def test_swinunet_shapes_and_gradients():
    torch.manual_seed(0)
    model = build("swinunet", in_channels=1, num_classes=3, dim=2, width=12, heads=[3, 3, 3, 3], drop_path=0.0)
    x = torch.randn(2, 1, 64, 96)
    model.eval()
    assert model(x).shape == (2, 3, 64, 96)
    _check_all_grads(model, x)
    rgb = build("swinunet", in_channels=3, num_classes=2, dim=2, width=12, heads=[3, 3], depths=[1, 1])
    assert rgb.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 2, 32, 32)
    with pytest.raises(SalsegError, match="multiples of 32"):
        model(torch.randn(1, 1, 48, 64))


def test_swinunetr_shapes_and_gradients():
    torch.manual_seed(0)
    model = build("swinunetr", "reca", in_channels=2, num_classes=3, dim=3, width=6, heads=[3, 3, 3, 3])
    x = torch.randn(1, 2, 64, 32, 32)
    assert model.eval()(x).shape == (1, 3, 64, 32, 32)
    _check_all_grads(model, x)
    with pytest.raises(SalsegError, match="multiple of 32"):
        model(torch.randn(1, 2, 48, 32, 32))
    with pytest.raises(SalsegError, match="more than one voxel"):
        model(torch.randn(1, 2, 32, 32, 32))


def test_swin_factories_reject_bad_options():
    with pytest.raises(SalsegError, match="does not know"):
        build("swinunet", in_channels=1, num_classes=2, dim=2, bogus=1)
    with pytest.raises(SalsegError, match="3D only|2D"):
        build("swinunetr", in_channels=1, num_classes=2, dim=2)
    with pytest.raises(SalsegError, match="four Swin stages"):
        build("swinunetr", in_channels=1, num_classes=2, dim=3, depths=[2, 2])
    with pytest.raises(SalsegError, match="strategy"):
        build("swinunet", "reca", in_channels=1, num_classes=2, dim=2, strategy="x")
