"""MT-UNet: the release's parameter count, shapes, size handling, and its blocks against direct computations."""

from __future__ import annotations

import math

import pytest
import torch

from salseg.errors import SalsegError
from salseg.nets import build, get_network
from salseg.nets.mtunet_blocks import GaussianTrans, MEAttention, pad_like_release

torch.set_num_threads(1)


def test_parameter_count_matches_release():
    model = build("mtunet", in_channels=1, num_classes=4, dim=2)  # full size, no forward pass
    assert sum(p.numel() for p in model.parameters()) == 79_075_064
    entry = get_network("mtunet")
    assert entry.fixed_size == (224, 224) and entry.has_self_attention and entry.dims == (2,)
    assert entry.recipe == {"optimizer": "adam", "lr": 1e-4, "weight_decay": 1e-4, "batch_size": 8,
                            "patch_size": [224, 224]}


def _tiny(**opts):
    torch.manual_seed(0)
    return build("mtunet", in_channels=opts.pop("in_channels", 1), num_classes=3, dim=2, width=8, **opts)


def test_shape_gray_repeat_and_gradients():
    model = _tiny()
    x = torch.randn(2, 1, 224, 224)
    model.eval()
    y = model(x)
    assert y.shape == (2, 3, 224, 224)
    rgb = build("mtunet", in_channels=3, num_classes=3, dim=2, width=8).eval()
    rgb.load_state_dict(model.state_dict(), strict=True)  # same layers: the gray input is repeated to 3 channels
    assert torch.allclose(rgb(x.repeat(1, 3, 1, 1)), y, atol=1e-6)
    model.train()
    model(x).square().mean().backward()
    # Unused in the reference too: the axial attention's `out` projection is never applied (the release builds it
    # and counts it), and GaussianTrans.bias is added to every logit of a softmax, so its gradient is exactly 0
    # up to rounding.
    unused = {"global_atten.out.weight", "global_atten.out.bias", "gaussiantrans.bias"}
    for name, p in model.named_parameters():
        if any(name.endswith(u) for u in unused):
            if name.endswith("gaussiantrans.bias"):
                assert p.grad is None or p.grad.abs().max() < 1e-5
            else:
                assert p.grad is None
        else:
            assert p.grad is not None and torch.any(p.grad != 0), name


def test_wrong_size_refused_or_interpolated():
    model = _tiny().eval()
    with pytest.raises(SalsegError, match=r"built for 224 x 224.*interpolate_pos"):
        model(torch.randn(1, 1, 256, 256))
    with pytest.raises(SalsegError, match="multiples of 32"):
        model(torch.randn(1, 1, 200, 200))
    interp = _tiny(interpolate_pos=True).eval()
    assert interp(torch.randn(1, 1, 64, 96)).shape == (1, 3, 64, 96)
    # interpolating to the built size is the identity
    x = torch.randn(1, 1, 224, 224)
    interp.load_state_dict(model.state_dict())
    assert torch.equal(interp(x), model(x))
    own = _tiny(img_size=[64, 64]).eval()
    assert own.stem.position_embedding.shape == (1, 64, 32) and own(torch.randn(1, 1, 64, 64)).shape[-1] == 64
    with pytest.raises(SalsegError, match="does not know"):
        _tiny(bogus=True)


def test_gaussian_trans_matches_release_loop():
    torch.manual_seed(0)
    g = GaussianTrans()
    b, h, w, c = 2, 3, 4, 5
    rows, cols, v = torch.randn(b, h, w, w), torch.randn(b, w, h, h), torch.randn(b, h, w, c)
    out = g(rows, cols, v)
    ref = torch.zeros_like(v)
    for r in range(h):  # the release's per-position loop, written directly
        for col in range(w):
            dx = -(g.shift * torch.tensor([(k - col) ** 2 for k in range(w)]) + g.bias)
            dy = -(g.shift * torch.tensor([(k - r) ** 2 for k in range(h)]) + g.bias)
            ax, ay = torch.softmax(dx + rows[:, r, col], -1), torch.softmax(dy + cols[:, col, r], -1)
            ref[:, r, col] = (ax[..., None] * v[:, r]).sum(-2) + (ay[..., None] * v[:, :, col]).sum(-2)
    assert torch.allclose(out, ref, atol=1e-6)


def test_padding_like_release():
    x = torch.randn(1, 2, 7, 7)
    p = pad_like_release(x, 4)
    assert p.shape == (1, 2, 8, 8)
    assert torch.equal(p[:, :, :7, :7], x) and torch.equal(p[:, :, 7, 7], x[:, :, 6, 6])
    assert not p[:, :, 7, :7].any() and not p[:, :, :7, 7].any()
    assert torch.equal(pad_like_release(x[..., :4, :4], 4), x[..., :4, :4])  # a multiple of 4: unchanged


def test_external_attention_matches_direct_computation():
    torch.manual_seed(0)
    ea = MEAttention(16, heads=2, slots=5)  # 8 heads of width 8 (4x widened)
    x = torch.randn(2, 6, 16)
    q = ea.query_liner(x).view(2, 6, 8, 8)
    out = torch.zeros(2, 6, 8, 8)
    for hd in range(8):
        s = ea.linear_0(q[:, :, hd])  # (B, N, slots)
        a = torch.softmax(s, 1)
        a = a / (1e-9 + a.sum(-1, keepdim=True))
        out[:, :, hd] = ea.linear_1(a)
    assert torch.allclose(ea(x), ea.proj(out.reshape(2, 6, 64)), atol=1e-6)
    assert math.isclose(sum(p.numel() for p in ea.parameters()),
                        16 * 64 + 64 + 8 * 5 + 5 + 5 * 8 + 8 + 64 * 16 + 16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_runs_on_cuda():
    model = _tiny(attention="reca").cuda().eval()
    assert model(torch.randn(1, 1, 224, 224, device="cuda")).shape == (1, 3, 224, 224)
