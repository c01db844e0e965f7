"""Channel attention of every slice module stays finite in reduced precision (issue 14, item 1).

At 224^2 the attention product Q K^T sums 50,176 terms; with near-saturated ConvLSTM states (i, f, o ~ 1, g ~ 1,
so Q = (f + c)/2 ~ 1.5, K = (g + h)/2 ~ 0.98) it is ~74,000, beyond float16's maximum of 65,504. Each module runs
once under CPU autocast (bfloat16) and once fully in float16 and must match its own float32 output.
"""

from __future__ import annotations

import pytest
import torch

from salseg.nets import modules
from salseg.nets.modules.slice_heads import channel_attention, lstm_qkv

SIZE = 224
ATTENDING = ["salstm", "lstmsa", "salstm-nl", "lstmsa-nl", "sa", "sa+lstm"]


def _saturated_head(name: str, features: int = 2):
    torch.manual_seed(0)
    head = modules()[name].build(features=features, num_classes=2)
    with torch.no_grad():
        for cell in (getattr(head, "lstm_fwd", None), getattr(head, "lstm_bwd", None)):
            if cell is not None:  # gates and candidate pushed into saturation, a little spatial variation kept
                cell.conv.weight.mul_(0.05)
                cell.conv.bias.uniform_(4.0, 6.0)
        for qkv in (getattr(head, "qkv", None), getattr(head, "qkv_fwd", None), getattr(head, "qkv_bwd", None)):
            if qkv is not None:  # projections close to the identity: Q K^T as large as the states make it
                for conv in (qkv.q, qkv.k, qkv.v):
                    conv.weight.copy_(torch.eye(features)[:, :, None, None] + 0.02 * conv.weight)
                    conv.bias.zero_()
    return head


def _features(features: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return 1.5 + 0.1 * torch.randn(1, 3, features, SIZE, SIZE, generator=g)


def test_saturated_states_overflow_the_naive_fp16_order():
    """The states used below really overflow s * (Q K^T) in float16 — and the module's order does not."""
    head = _saturated_head("salstm").half()
    feats = _features().half()
    st = head.lstm_fwd.run([feats[:, 0], feats[:, 1]])
    q, k, v = lstm_qkv(st, "sa")
    b, c = q.shape[:2]
    naive = torch.bmm(q.reshape(b, c, -1), k.reshape(b, c, -1).transpose(1, 2)) * head.scale
    assert not torch.isfinite(naive).all()
    assert torch.isfinite(channel_attention(q, k, v, head.scale)).all()


@pytest.mark.parametrize("name", ATTENDING)
def test_module_finite_in_bf16_autocast_and_fp16(name):
    head = _saturated_head(name)
    feats = _features()
    with torch.no_grad():
        ref = head(feats)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = head(feats)
        fp16 = head.half()(feats.half())
    assert torch.isfinite(ref).all()
    for out, tol in ((bf16, 0.05), (fp16, 0.01)):
        assert torch.isfinite(out).all()
        err = (out.float() - ref).abs().max().item()
        assert err <= tol * max(1.0, ref.abs().max().item()), (name, out.dtype, err)


def test_float64_and_float32_unchanged_by_the_scaling_order():
    """Outside reduced precision the formula is the spec's: softmax(s Q K^T) V in the input's own dtype."""
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 5, 6, 7, generator=g, dtype=torch.float64) for _ in range(3))
    s = 1 / 88
    ref = torch.softmax(s * torch.einsum("bcn,bdn->bcd", q.flatten(2), k.flatten(2)), -1) @ v.flatten(2)
    out = channel_attention(q, k, v, s)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, ref.reshape(2, 5, 6, 7), atol=1e-13, rtol=0)
    assert channel_attention(q.float(), k.float(), v.float(), None).dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", ["salstm", "lstmsa"])
def test_module_finite_under_cuda_autocast(name):
    head = _saturated_head(name, features=8).cuda()
    feats = _features(8).cuda()
    with torch.no_grad():
        ref = head(feats)
        with torch.autocast("cuda", dtype=torch.float16):
            out = head(feats)
    assert torch.isfinite(out).all()
    assert (out.float() - ref).abs().max().item() <= 0.01 * max(1.0, ref.abs().max().item())
