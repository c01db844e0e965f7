"""Slice-recurrent heads: SA-LSTM, LSTM-SA, their non-linear variants and the ablations (spec/modules.md §1).

Every head takes the 64-channel backbone features of K neighbouring slices ``(B, K, C, H, W)`` (K = 3: previous,
centre, next) and returns the centre slice's logits ``(B, classes, H, W)``. Recurrent heads run a ConvLSTM forwards
over slices ``0..K//2`` and a second one (own weights) backwards over ``K-1..K//2``; each direction's last-step states
become a (B, C, H, W) map ``y_dir`` and the logits are ``Conv1x1(concat[y_fwd, y_bwd])``.

Attention: the C channels are the tokens, each a flattened H*W map::

    A = softmax(s * Q K^T)   (B, C, C)        y = A V reshaped to (B, C, H, W)

single head, no residual, no norm, no output projection. ``scale`` s defaults to 1/88 (the released ACDC code);
``scale="paper"`` (or None) gives the paper text's 1/sqrt(H*W); a number is used as is.

A head is its fusion core (``SliceHead.fuse``: K feature maps -> ``out_channels`` fused maps, 2C for the recurrent
heads, C for ``sa``) followed by the 1x1 classifier ``out``. ``classifier=False`` builds the core alone; the other
module positions (salseg.nets.modules.positions) run that core inside the backbone.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from salseg.errors import ConfigError
from salseg.nets.modules.convlstm import ConvLSTMCell, LSTMStates
from salseg.nets.modules.positions import attach_slice
from salseg.nets.registry import register_module

DEFAULT_SCALE = 1.0 / 88.0
_OPTIONS = ("scale", "features")


def parse_scale(scale) -> float | None:
    """Normalise the ``scale`` option: None for the paper's 1/sqrt(H*W), else a positive float (accepts "1/88")."""
    if scale is None or (isinstance(scale, str) and scale.strip().lower() in ("paper", "none", "sqrt")):
        return None
    try:
        if isinstance(scale, str) and "/" in scale:
            num, den = scale.split("/", 1)
            value = float(num) / float(den)
        else:
            value = float(scale)
    except (TypeError, ValueError, ZeroDivisionError):
        raise ConfigError(f"module option scale={scale!r} is not a number, a fraction like 1/88, or 'paper'") from None
    if not value > 0 or not math.isfinite(value):
        raise ConfigError(f"module option scale={scale!r} must be a positive number")
    return value


def channel_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None) -> torch.Tensor:
    """softmax(s * Q K^T) V with the channels as tokens; q, k, v (B, C, H, W). ``scale=None``: s = 1/sqrt(H*W).

    Numerically safe under fp16/bf16: Q is scaled BEFORE the product (s * Q K^T == (s Q) K^T exactly in real
    arithmetic), and in reduced precision (half inputs or an active autocast) the whole attention runs in float32
    with autocast off, because Q K^T sums H*W terms (50,176 at 224^2: saturated LSTM states give ~75,000 >
    65,504, the fp16 maximum). The result is cast back to the input dtype. Float32/float64 inputs outside
    autocast take the same formula in their own precision.
    """
    b, c, h, w = q.shape
    s = 1.0 / math.sqrt(h * w) if scale is None else scale
    dtype = q.dtype
    low = dtype in (torch.float16, torch.bfloat16) or torch.is_autocast_enabled(q.device.type)
    if low:
        with torch.autocast(q.device.type, enabled=False):
            out = _attention(q.float(), k.float(), v.float(), s)
        return out.to(dtype if dtype in (torch.float16, torch.bfloat16) else out.dtype)
    return _attention(q, k, v, s)


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, s: float) -> torch.Tensor:
    b, c, h, w = q.shape
    attn = torch.softmax(torch.bmm(q.reshape(b, c, h * w) * s, k.reshape(b, c, h * w).transpose(1, 2)), dim=-1)
    return torch.bmm(attn, v.reshape(b, c, h * w)).reshape(b, c, h, w)


class QKV(nn.Module):
    """Per-pixel linear maps over channels (1x1 convs, with bias) for Q, K and V."""

    def __init__(self, channels: int):
        super().__init__()
        self.q, self.k, self.v = (nn.Conv2d(channels, channels, 1) for _ in range(3))


def lstm_qkv(st: LSTMStates, states: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Q, K, V built from the LSTM states: ``sa`` (released code), ``nl`` (paper Eq. 4) or ``h`` (plain)."""
    if states == "sa":
        return (st.f + st.c) / 2, (st.g + st.h) / 2, st.h
    if states == "nl":
        return torch.relu(st.f * st.c), torch.relu(st.g * st.h), st.h
    return st.h, st.h, st.h


class SliceHead(nn.Module):
    """Configurable slice-recurrent head; the registered modules below are its named configurations.

    states: how Q/K/V come from the LSTM states ("sa", "nl", "h"); proj: None (parameter-free), "gate"
    (Q = W_Q(h) * Q_states, ...: LSTM-SA) or "linear" (Q = W_Q(x), ...: standard self-attention);
    attend=False: y = h (ConvLSTM only); recurrent=False: standard self-attention on the centre slice only.
    """

    def __init__(self, features: int = 64, num_classes: int = 4, *, states: str = "sa", proj: str | None = None,
                 attend: bool = True, recurrent: bool = True, scale=DEFAULT_SCALE, name: str = "",
                 classifier: bool = True):
        super().__init__()
        if features < 1 or num_classes < 1:
            raise ConfigError(f"{name or 'slice head'}: features and num_classes must be positive")
        self.name, self.states, self.proj, self.attend, self.recurrent = name, states, proj, attend, recurrent
        self.features, self.num_classes = int(features), int(num_classes)
        self.scale = parse_scale(scale)
        if recurrent:
            self.lstm_fwd = ConvLSTMCell(features, features)
            self.lstm_bwd = ConvLSTMCell(features, features)
            # per-direction projections (none without attention or projection)
            self.qkv_fwd, self.qkv_bwd = (QKV(features), QKV(features)) if attend and proj else (None, None)
        else:
            self.qkv = QKV(features)
        self.out_channels = (2 if recurrent else 1) * self.features  # channels of the fused features
        self.out = nn.Conv2d(self.out_channels, num_classes, 1) if classifier else None

    def _project(self, qkv: QKV, q, k, v, h):
        if self.proj == "gate":
            return qkv.q(h) * q, qkv.k(h) * k, qkv.v(h) * v
        if self.proj == "linear":
            return qkv.q(q), qkv.k(k), qkv.v(v)
        return q, k, v

    def direction_output(self, st: LSTMStates, qkv: QKV | None) -> torch.Tensor:
        """y_dir of one direction from its last-step states."""
        if not self.attend:
            return st.h
        q, k, v = self._project(qkv, *lstm_qkv(st, self.states), st.h)
        return channel_attention(q, k, v, self.scale)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Centre logits (B, classes, H, W) = classifier(fuse(feats))."""
        if self.out is None:
            raise ConfigError(f"{self.name}: this is a fusion core without classifier; call fuse()")
        return self.out(self.fuse(feats))

    def fuse(self, feats: torch.Tensor) -> torch.Tensor:
        """Fused centre features (B, out_channels, H, W) from K slices' features (B, K, features, H, W)."""
        if feats.ndim != 5 or feats.shape[2] != self.features or feats.shape[1] % 2 == 0:
            raise ConfigError(f"{self.name}: expected features (B, K odd, {self.features}, H, W), "
                              f"got {tuple(feats.shape)}")
        mid = feats.shape[1] // 2
        if not self.recurrent:
            x = feats[:, mid]
            return channel_attention(*self._project(self.qkv, x, x, x, x), self.scale)
        st_f = self.lstm_fwd.run([feats[:, j] for j in range(0, mid + 1)])
        st_b = self.lstm_bwd.run([feats[:, j] for j in range(feats.shape[1] - 1, mid - 1, -1)])
        y_f = self.direction_output(st_f, self.qkv_fwd)
        y_b = self.direction_output(st_b, self.qkv_bwd)
        return torch.cat([y_f, y_b], dim=1)

    def extra_repr(self) -> str:
        s = "1/sqrt(H*W)" if self.scale is None else f"{self.scale:.6g}"
        return f"name={self.name!r}, states={self.states!r}, proj={self.proj!r}, attend={self.attend}, scale={s}"


def _head(name: str, **config):
    def build(features: int = 64, num_classes: int = 4, scale=DEFAULT_SCALE, classifier: bool = True) -> SliceHead:
        return SliceHead(features, num_classes, scale=scale, name=name, classifier=classifier, **config)

    return build


# name, configuration, one-line description
_HEADS = [
    ("salstm", dict(states="sa"), "SA-LSTM: parameter-free attention from ConvLSTM states, Q=(f+c)/2, K=(g+h)/2, V=h"),
    ("lstmsa", dict(states="sa", proj="gate"), "LSTM-SA: gated attention Q=W_Q(h)*(f+c)/2, K=W_K(h)*(g+h)/2, "
                                               "V=W_V(h)*h"),
    ("salstm-nl", dict(states="nl"), "SA-LSTM, non-linear (paper Eq. 4): Q=ReLU(f*c), K=ReLU(g*h), V=h"),
    ("lstmsa-nl", dict(states="nl", proj="gate"), "LSTM-SA, non-linear (paper Eq. 4) inside the gating"),
    ("lstm", dict(attend=False), "ablation: bidirectional ConvLSTM only (y = h)"),
    ("sa", dict(recurrent=False, proj="linear"), "ablation: standard channel self-attention on the centre slice"),
    ("sa+lstm", dict(states="h", proj="linear"), "ablation: ConvLSTM, then standard self-attention on h (separate)"),
]

for _name, _config, _desc in _HEADS:
    register_module(_name, kind="slice", options=_OPTIONS, description=_desc, attach=attach_slice)(
        _head(_name, **_config))
