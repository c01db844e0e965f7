"""RecA (spec/modules.md §2): zero parameters, strict baseline checkpoints, the recurrence checked by hand."""

from __future__ import annotations

import pytest
import torch

from salseg.errors import SalsegError
from salseg.nets import build, get_module
from salseg.nets.mtunet_blocks import WindowSelfAttention
from salseg.nets.swin import Layout, RecAState, WindowAttention, window_partition

torch.set_num_threads(1)

TINY = {
    "swinunet": dict(dim=2, shape=(1, 1, 64, 64), opts=dict(width=12, heads=[3, 3, 3, 3])),
    "swinunetr": dict(dim=3, shape=(1, 1, 64, 32, 32), opts=dict(width=6, heads=[3, 3, 3, 3])),
    "mtunet": dict(dim=2, shape=(1, 1, 224, 224), opts=dict(width=8)),
}


def _pair(network, depth, seed=0, **reca):
    cfg = TINY[network]
    opts = dict(cfg["opts"])
    if network == "mtunet":
        opts["depth"] = depth
    else:
        opts["depths"] = [depth] * 4
    torch.manual_seed(seed)
    base = build(network, "none", in_channels=1, num_classes=3, dim=cfg["dim"], **opts).eval()
    rec = build(network, "reca", in_channels=1, num_classes=3, dim=cfg["dim"], **opts, **reca).eval()
    rec.load_state_dict(base.state_dict(), strict=True)  # a baseline checkpoint loads strictly
    torch.manual_seed(seed + 1)
    return base, rec, torch.randn(cfg["shape"])


ENCODER_END = {"swinunet": "layers.3", "swinunetr": "swinViT.layers.3", "mtunet": "bottleneck.1"}


def _run(model, x, network):
    """(logits, encoder output): an untrained MT-UNet's logits barely feel the transformer, so compare both."""
    grab = {}
    name = ENCODER_END[network]
    if network == "mtunet" and not hasattr(model.bottleneck, "1"):
        name = "bottleneck.0"
    hook = model.get_submodule(name).register_forward_hook(lambda m, i, o: grab.setdefault("out", o))
    try:
        return model(x), grab["out"]
    finally:
        hook.remove()


def _same(a, b, network):
    ya, fa = _run(a[0], a[1], network)
    yb, fb = _run(b[0], b[1], network)
    return torch.equal(ya, yb) and torch.equal(fa, fb)


def _differ(a, b, network):
    ya, fa = _run(a[0], a[1], network)
    yb, fb = _run(b[0], b[1], network)
    return not torch.allclose(fa, fb, atol=1e-5) and not torch.equal(ya, yb)


def _nparams(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("network", sorted(TINY))
def test_reca_adds_no_parameters_and_same_names(network):
    base, rec, _ = _pair(network, 2)
    assert _nparams(rec) == _nparams(base)
    assert list(rec.state_dict()) == list(base.state_dict())


@pytest.mark.parametrize("network", sorted(TINY))
def test_one_block_per_group_equals_baseline_and_two_blocks_differ(network):
    with torch.no_grad():
        base, rec, x = _pair(network, 1, strategy="ists")
        assert _same((rec, x), (base, x), network)  # single block per stage: nothing to hand on under ISTS
        base, rec, x = _pair(network, 2, strategy="ists")
        assert _differ((rec, x), (base, x), network)


@pytest.mark.parametrize("network", sorted(TINY))
def test_sts_differs_from_ists(network):
    with torch.no_grad():
        base, ists, x = _pair(network, 1, strategy="ists")
        _, sts, _ = _pair(network, 1, strategy="sts")
        # one block per stage: ISTS == baseline, but STS carries the state over the stage boundaries
        assert _same((ists, x), (base, x), network)
        assert _differ((sts, x), (base, x), network)
        _, ists2, x2 = _pair(network, 2, strategy="ists")
        _, sts2, _ = _pair(network, 2, strategy="sts")
        assert _differ((sts2, x2), (ists2, x2), network)


def test_align_changes_only_shifted_blocks():
    with torch.no_grad():
        _, quirk, x = _pair("swinunet", 2, align=False)
        _, aligned, _ = _pair("swinunet", 2, align=True)
        assert _differ((quirk, x), (aligned, x), "swinunet")  # stage 0 (16x16 grid) shifts by 3
        _, quirk, x = _pair("mtunet", 2, align=False)  # MT-UNet has no shifted windows
        _, aligned, _ = _pair("mtunet", 2, align=True)
        assert _same((quirk, x), (aligned, x), "mtunet")


def test_layout_grid_round_trip():
    torch.manual_seed(0)
    lay = Layout(2, (9, 10), (14, 14), (7, 7), (3, 3))
    grid = torch.randn(2, 9, 10, 8)
    t = lay.from_grid(grid, heads=2)
    assert t.shape == (2 * 4, 2, 49, 4)
    assert torch.equal(lay.to_grid(t), grid)


def _manual_attention(x, w, b, heads, qprev, bias=None):
    """softmax((Qhat d^-1/2) K^T + bias) V W_o from the raw weights; returns (out, Qhat)."""
    wq, wk, wv, wo = w
    bq, bk, bv, bo = b
    n, c = x.shape[-2:]
    d = c // heads

    def split(t):
        return t.reshape(t.shape[0], n, heads, d).transpose(1, 2)

    q, k, v = split(x @ wq.T + bq), split(x @ wk.T + bk), split(x @ wv.T + bv)
    qhat = q if qprev is None else q + qprev
    scores = (qhat * d ** -0.5) @ k.transpose(-1, -2)
    if bias is not None:
        scores = scores + bias
    out = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(x.shape[0], n, c)
    return out @ wo.T + bo, qhat


def test_swin_window_attention_pair_matches_hand_computation():
    torch.manual_seed(0)
    c, heads, win = 8, 2, (2, 2)
    a0, a1 = WindowAttention(c, heads, win), WindowAttention(c, heads, win)
    x0, x1 = torch.randn(3, 4, c), torch.randn(3, 4, c)
    lay = Layout(3, (2, 2), (2, 2), win, (0, 0))
    state = RecAState()
    y0 = a0(x0, win, None, state, lay)
    y1 = a1(x1, win, None, state, lay)

    def weights(a):
        wq, wk, wv = a.qkv.weight.chunk(3, 0)
        bq, bk, bv = a.qkv.bias.chunk(3, 0)
        return (wq, wk, wv, a.proj.weight), (bq, bk, bv, a.proj.bias)

    # relative position bias by hand for a 2x2 window: index = (dy + 1) * 3 + (dx + 1)
    coords = [(i, j) for i in range(2) for j in range(2)]

    def bias(a):
        tab = a.relative_position_bias_table
        return torch.stack([torch.stack([tab[(p[0] - q[0] + 1) * 3 + (p[1] - q[1] + 1)] for q in coords])
                            for p in coords]).permute(2, 0, 1)

    m0, q0 = _manual_attention(x0, *weights(a0), heads, None, bias(a0))
    m1, _ = _manual_attention(x1, *weights(a1), heads, q0, bias(a1))
    assert torch.allclose(y0, m0, atol=1e-6) and torch.allclose(y1, m1, atol=1e-6)
    # the second block's output is NOT the baseline's
    b1, _ = _manual_attention(x1, *weights(a1), heads, None, bias(a1))
    assert not torch.allclose(y1, b1, atol=1e-5)


def test_mtunet_window_attention_pair_matches_hand_computation_and_gradients_flow():
    torch.manual_seed(0)
    c, heads = 8, 2
    a0, a1 = WindowSelfAttention(c, heads), WindowSelfAttention(c, heads)
    x0, x1 = torch.randn(2, 16, c), torch.randn(2, 16, c)
    lay = Layout(2, (4, 4), (4, 4), (4, 4), (0, 0))
    state = RecAState()
    a0(x0, state, lay)
    y1 = a1(x1, state, lay)

    def weights(a):
        ls = (a.query_layer, a.key_layer, a.value_layer, a.out)
        return tuple(l.weight for l in ls), tuple(l.bias for l in ls)

    _, q0 = _manual_attention(x0, *weights(a0), heads, None)
    m1, _ = _manual_attention(x1, *weights(a1), heads, q0)
    assert torch.allclose(y1, m1, atol=1e-6)
    # no detach: the second block's output depends on the first block's W_q (and not on its W_k / W_v)
    y1.square().sum().backward()
    assert a0.query_layer.weight.grad is not None and a0.query_layer.weight.grad.abs().sum() > 0
    assert a0.key_layer.weight.grad is None and a0.value_layer.weight.grad is None


def test_swin_gradient_reaches_first_block_query_weights():
    torch.manual_seed(0)
    c, heads, win = 8, 2, (2, 2)
    a0, a1 = WindowAttention(c, heads, win), WindowAttention(c, heads, win)
    lay = Layout(1, (2, 2), (2, 2), win, (0, 0))
    x = window_partition(torch.randn(1, 2, 2, c), win)
    state = RecAState()
    a0(x, win, None, state, lay)
    a1(x.flip(1), win, None, state, lay).sum().backward()
    g = a0.qkv.weight.grad
    assert g[:c].abs().sum() > 0  # W_q rows of the first block
    assert torch.count_nonzero(g[c:]) == 0  # its W_k, W_v do not reach the second block


def test_reca_module_validates_options():
    entry = get_module("reca")
    assert entry.kind == "attention" and set(entry.options) == {"strategy", "align"}
    assert entry.build(strategy="sts", align=True) == {"strategy": "sts", "align": True}
    with pytest.raises(SalsegError, match="strategy"):
        entry.build(strategy="hierarchical")
    with pytest.raises(SalsegError, match="align"):
        entry.build(align="yes")
    with pytest.raises(SalsegError, match="strategy"):
        build("mtunet", "reca", in_channels=1, num_classes=2, width=8, strategy="bogus")
    with pytest.raises(SalsegError, match="no self-attention"):
        build("unet", "reca", in_channels=1, num_classes=2)
