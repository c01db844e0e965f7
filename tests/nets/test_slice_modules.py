"""Slice-recurrent heads (spec/modules.md §1): exact parameter counts, attention against a direct computation from
independently computed ConvLSTM states, shapes of every valid unet pair, weight sharing, gradients."""

import math

import pytest
import torch
import torch.nn.functional as F

from salseg.errors import ConfigError, SalsegError
from salseg.nets import build, modules, valid_modules
from salseg.nets.capabilities import capabilities_of
from salseg.nets.modules.slice_heads import parse_scale

SLICE = ["salstm", "lstmsa", "salstm-nl", "lstmsa-nl", "lstm", "sa", "sa+lstm"]


def _nparams(m):
    return sum(p.numel() for p in m.parameters())


def _head(name, **kw):
    return modules()[name].build(**kw)


def test_exact_parameter_counts():
    cell = _head("salstm", features=64, num_classes=4).lstm_fwd
    assert _nparams(cell) == 128 * 256 * 25 + 256 == 819_456
    assert _nparams(_head("salstm", features=64, num_classes=4)) == 1_639_428
    assert _nparams(_head("lstmsa", features=64, num_classes=4)) == 1_664_388
    assert _nparams(_head("salstm-nl", features=64, num_classes=4)) == 1_639_428
    assert _nparams(_head("lstmsa-nl", features=64, num_classes=4)) == 1_664_388
    assert _nparams(_head("lstm", features=64, num_classes=4)) == 1_639_428          # no attention parameters
    assert _nparams(_head("sa+lstm", features=64, num_classes=4)) == 1_664_388       # own Q/K/V per direction
    assert _nparams(_head("sa", features=64, num_classes=4)) == 3 * (64 * 64 + 64) + 64 * 4 + 4


# ---- an independent reference built from the cell's weights with plain torch ops ----
def _ref_states(conv, seq, hidden):
    h = torch.zeros(seq[0].shape[0], hidden, *seq[0].shape[2:])
    c = torch.zeros_like(h)
    for x in seq:
        a = F.conv2d(torch.cat([x, h], 1), conv.weight, conv.bias, padding=2)
        ai, af, ao, ag = a[:, :hidden], a[:, hidden:2 * hidden], a[:, 2 * hidden:3 * hidden], a[:, 3 * hidden:]
        i, f, o, g = ai.sigmoid(), af.sigmoid(), ao.sigmoid(), ag.tanh()
        c = f * c + i * g
        h = o * c.tanh()
    return dict(h=h, c=c, f=f, g=g, i=i, o=o)


def _ref_attention(q, k, v, s):
    b, ch, hh, ww = q.shape
    q, k, v = q.reshape(b, ch, -1), k.reshape(b, ch, -1), v.reshape(b, ch, -1)
    scores = torch.einsum("bcn,bdn->bcd", q, k) * s
    a = scores.exp() / scores.exp().sum(-1, keepdim=True)
    return torch.einsum("bcd,bdn->bcn", a, v).reshape(b, ch, hh, ww)


def _conv1x1(conv, x):
    return torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], x) + conv.bias[None, :, None, None]


def _reference_logits(head, feats, kind, s):
    fwd = _ref_states(head.lstm_fwd.conv, [feats[:, 0], feats[:, 1]], head.features)
    bwd = _ref_states(head.lstm_bwd.conv, [feats[:, 2], feats[:, 1]], head.features)
    ys = []
    for st, qkv in ((fwd, getattr(head, "qkv_fwd", None)), (bwd, getattr(head, "qkv_bwd", None))):
        if kind == "nl":
            q, k = torch.relu(st["f"] * st["c"]), torch.relu(st["g"] * st["h"])
        else:
            q, k = (st["f"] + st["c"]) / 2, (st["g"] + st["h"]) / 2
        v = st["h"]
        if qkv is not None:  # LSTM-SA gating
            q, k, v = _conv1x1(qkv.q, st["h"]) * q, _conv1x1(qkv.k, st["h"]) * k, _conv1x1(qkv.v, st["h"]) * v
        ys.append(_ref_attention(q, k, v, s))
    return _conv1x1(head.out, torch.cat(ys, 1))


@pytest.mark.parametrize("name,kind,scale", [("salstm", "sa", None), ("salstm", "sa", "paper"),
                                             ("lstmsa", "sa", None), ("salstm-nl", "nl", 0.3),
                                             ("lstmsa-nl", "nl", None)])
def test_attention_equals_direct_computation(name, kind, scale):
    torch.manual_seed(1)
    kw = {} if scale is None else {"scale": scale}
    head = _head(name, features=6, num_classes=3, **kw).double()
    feats = torch.randn(2, 3, 6, 5, 7, dtype=torch.float64)
    s = {None: 1 / 88, "paper": 1 / math.sqrt(5 * 7)}.get(scale, scale)
    with torch.no_grad():
        assert torch.allclose(head(feats), _reference_logits(head, feats.double(), kind, s), atol=1e-10)


def test_lstm_ablation_is_conv1x1_of_hidden_states():
    torch.manual_seed(2)
    head = _head("lstm", features=4, num_classes=2).double()
    feats = torch.randn(1, 3, 4, 6, 6, dtype=torch.float64)
    hf = _ref_states(head.lstm_fwd.conv, [feats[:, 0], feats[:, 1]], 4)["h"]
    hb = _ref_states(head.lstm_bwd.conv, [feats[:, 2], feats[:, 1]], 4)["h"]
    with torch.no_grad():
        assert torch.allclose(head(feats), _conv1x1(head.out, torch.cat([hf, hb], 1)), atol=1e-12)


def test_scale_option_parsing():
    assert parse_scale("paper") is None and parse_scale(None) is None
    assert parse_scale("1/88") == pytest.approx(1 / 88) and parse_scale(0.5) == 0.5
    with pytest.raises(ConfigError, match="scale"):
        parse_scale("abc")
    with pytest.raises(ConfigError, match="positive"):
        parse_scale(-1)


def test_every_valid_unet_pair_has_the_right_output_shape():
    valid2 = valid_modules("unet", 2)
    assert set(SLICE) <= set(valid2) and "none" in valid2
    for module in valid2:
        torch.manual_seed(0)
        opts = {"features": 4} if module in SLICE else {}  # `none` and `stack` take no features option
        model = build("unet", module, in_channels=2, num_classes=3, dim=2, width=2, patch_size=(16, 16), **opts).eval()
        is_slice = capabilities_of(model).is_slice_model
        x = torch.randn(2, 3, 2, 16, 16) if is_slice else torch.randn(2, 2, 16, 16)
        with torch.no_grad():
            assert model(x).shape == (2, 3, 16, 16), module
        assert is_slice == (module in SLICE or module == "stack") and (not is_slice or model.k == 3)
    for module in valid_modules("unet", 3):  # 3D: the baseline (slice heads are 2D only)
        model = build("unet", module, in_channels=1, num_classes=2, dim=3, width=2, patch_size=(16, 16, 16)).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 1, 16, 16, 16)).shape == (1, 2, 16, 16, 16)


def test_backbone_called_once_with_shared_weights_and_reusable_features():
    torch.manual_seed(0)
    model = build("unet", "salstm", in_channels=1, num_classes=3, width=2, features=4, patch_size=(16, 16)).eval()
    calls = []
    model.backbone.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape))
    x = torch.randn(2, 3, 1, 16, 16)
    with torch.no_grad():
        y = model(x)
        assert calls == [(6, 1, 16, 16)]  # B*K slices in one call
        f = [model.features(x[:, j]) for j in range(3)]
        assert f[0].shape == (2, 4, 16, 16)
        assert torch.allclose(model.head_logits(*f), y, atol=1e-6)
    with pytest.raises(SalsegError, match="K=3"):
        model(torch.randn(2, 5, 1, 16, 16))


@pytest.mark.parametrize("module", SLICE)
def test_gradients_reach_every_parameter(module):
    # Every parameter of backbone and head gets a gradient; the released code leaves none of these unused either
    # (its ConvLSTM forget gate at step 1 multiplies c_0 = 0, but step 2 uses it, so no weight is dead).
    torch.manual_seed(0)
    model = build("unet", module, in_channels=1, num_classes=2, width=2, features=4, patch_size=(32, 32)).train()
    out = model(torch.randn(2, 3, 1, 32, 32))
    assert isinstance(out, list) and len(out) == len(model.deep_supervision_scales) == 2  # deep supervision
    sum(o.square().mean() for o in out).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing
