"""Swin machinery written once for 2D and 3D, with optional RecA (recurrent attention, spec/modules.md §2).

Tensors inside a stage are channels-last ``(B, *spatial, C)``. A block pads its input at the end of every axis to
a multiple of the window (MONAI's SwinUNETR does the same), so any size works; an axis no longer than the window
uses a window of that size and no shift (Swin's rule). The relative-position-bias table is sized for the configured
window; a smaller effective window indexes the centre of that table, so the parameter count never depends on the
input size.

RecA. A :class:`RecAState` is handed to every block of a group (ISTS: a stage; STS: the whole encoder). Block i
computes Q_i, K_i, V_i as usual, then ``Qhat_i = Q_i + Qhat_{i-1}`` (``Qhat_0 = 0``, no detach), attends with
``softmax((Qhat_i * d^-1/2) K_i^T + bias (+ mask))`` and leaves the UNSCALED ``Qhat_i`` in the state. The state is
stored in the window-partition order of the block that wrote it. ``align=False`` (release behaviour) adds it index
by index even when the next block uses shifted windows; ``align=True`` first moves it to the next block's (shifted)
partition, so each token receives the query sum of the same image position. Under STS a state that crosses a stage
boundary (a patch merging: half the grid, twice the width) is carried over parameter-free: its grid is merged 2x
per axis by space-to-depth and consecutive channel groups are averaged down to the new width (salseg's reading; the
spec defines STS for plain encoders only). A state whose shape still does not fit is dropped (the group restarts).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from salseg.errors import SalsegError

STRATEGIES = ("ists", "sts")
ATTENTIONS = ("none", "reca")
MASK_VALUE = -100.0


def check_attention_options(attention: str = "none", strategy: str = "ists", align: bool = False) -> None:
    """Raise SalsegError for an attention option a Swin-style network does not know."""
    if attention not in ATTENTIONS:
        raise SalsegError(f"attention must be one of {', '.join(ATTENTIONS)}, got {attention!r}")
    if strategy not in STRATEGIES:
        raise SalsegError(f"RecA strategy must be 'ists' (state reset per stage) or 'sts' (one state through all "
                          f"encoder blocks), got {strategy!r}")
    if not isinstance(align, bool):
        raise SalsegError(f"RecA align must be true or false, got {align!r}")


# ----------------------------------------------------------------------------------------------- window geometry
def window_partition(x: torch.Tensor, window: Sequence[int]) -> torch.Tensor:
    """``(B, *S, C)`` with every S_a a multiple of window_a -> ``(B * nW, prod(window), C)`` (row-major windows)."""
    b, *size, c = x.shape
    nd = len(size)
    shape = [b]
    for s, w in zip(size, window):
        shape += [s // w, w]
    x = x.view(*shape, c)
    perm = [0] + [1 + 2 * a for a in range(nd)] + [2 + 2 * a for a in range(nd)] + [1 + 2 * nd]
    return x.permute(*perm).reshape(-1, math.prod(window), c)


def window_reverse(windows: torch.Tensor, window: Sequence[int], size: Sequence[int], batch: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B * nW, N, C)`` -> ``(B, *size, C)``."""
    nd, c = len(size), windows.shape[-1]
    counts = [s // w for s, w in zip(size, window)]
    x = windows.reshape(batch, *counts, *window, c)
    perm = [0]
    for a in range(nd):
        perm += [1 + a, 1 + nd + a]
    return x.permute(*perm, 1 + 2 * nd).reshape(batch, *size, c)


def effective_window(size: Sequence[int], window: Sequence[int], shift: Sequence[int]):
    """Swin's rule: an axis no longer than the window uses a window of its size and no shift."""
    w = tuple(s if s <= wi else wi for s, wi in zip(size, window))
    sh = tuple(0 if s <= wi else si for s, wi, si in zip(size, window, shift))
    return w, sh


def relative_position_index(window: Sequence[int], table_window: Sequence[int]) -> torch.Tensor:
    """``(N, N)`` indices into a bias table of ``prod(2 * table_window - 1)`` rows for a (smaller) ``window``."""
    coords = torch.stack(torch.meshgrid(*[torch.arange(w) for w in window], indexing="ij")).flatten(1)  # (nd, N)
    rel = coords[:, :, None] - coords[:, None, :]  # (nd, N, N)
    index = torch.zeros(rel.shape[1:], dtype=torch.long)
    for a, tw in enumerate(table_window):
        index = index * (2 * tw - 1) + rel[a] + (tw - 1)
    return index


def shift_mask(size: Sequence[int], window: Sequence[int], shift: Sequence[int], device) -> torch.Tensor | None:
    """``(nW, N, N)`` additive mask (0 or -100) for shifted windows on a padded grid ``size``; None if no shift."""
    if not any(shift):
        return None
    img = torch.zeros((1, *size, 1), device=device)
    count = 0
    ranges = [((slice(0, -w), slice(-w, -s), slice(-s, None)) if s else (slice(None),))
              for w, s in zip(window, shift)]
    for region in itertools.product(*ranges):
        img[(slice(None), *region, slice(None))] = count
        count += 1
    ids = window_partition(img, window).squeeze(-1)  # (nW, N)
    mask = ids[:, None, :] - ids[:, :, None]
    return mask.masked_fill(mask != 0, MASK_VALUE).masked_fill(mask == 0, 0.0)


@dataclass
class Layout:
    """Where a block's window-partitioned tensors live: batch, unpadded and padded grid, window, shift."""

    batch: int
    size: tuple
    padded: tuple
    window: tuple
    shift: tuple

    def to_grid(self, t: torch.Tensor) -> torch.Tensor:
        """``(B*nW, heads, N, hd)`` in this layout -> unshifted, unpadded grid ``(B, *size, heads*hd)``."""
        bw, h, n, d = t.shape
        g = window_reverse(t.transpose(1, 2).reshape(bw, n, h * d), self.window, self.padded, self.batch)
        if any(self.shift):
            g = torch.roll(g, self.shift, dims=tuple(range(1, 1 + len(self.size))))
        return g[(slice(None), *[slice(0, s) for s in self.size])]

    def from_grid(self, g: torch.Tensor, heads: int) -> torch.Tensor:
        """Unpadded grid ``(B, *size, C)`` -> ``(B*nW, heads, N, C/heads)`` in this layout (zeros where padded)."""
        pad = []
        for s, p in reversed(list(zip(self.size, self.padded))):
            pad += [0, p - s]
        g = F.pad(g, [0, 0] + pad)
        if any(self.shift):
            g = torch.roll(g, tuple(-s for s in self.shift), dims=tuple(range(1, 1 + len(self.size))))
        w = window_partition(g, self.window)
        return w.reshape(w.shape[0], w.shape[1], heads, -1).transpose(1, 2)


def merge_grid_state(g: torch.Tensor, channels: int) -> torch.Tensor | None:
    """STS across a patch merging: ``(B, *S, C)`` -> ``(B, *S/2, channels)`` by space-to-depth + group mean."""
    b, *size, c = g.shape
    if any(s % 2 for s in size) or (c * 2 ** len(size)) % channels:
        return None
    parts = [g[(slice(None), *off, slice(None))] for off in
             itertools.product(*[(slice(0, None, 2), slice(1, None, 2))] * len(size))]
    m = torch.cat(parts, -1)
    return m.reshape(*m.shape[:-1], channels, -1).mean(-1)


class RecAState:
    """The running query sum of one RecA group. Create one per group per forward pass."""

    def __init__(self, align: bool = False):
        self.align = bool(align)
        self.q: torch.Tensor | None = None
        self.layout: Layout | None = None

    def previous(self, layout: Layout, q: torch.Tensor) -> torch.Tensor | None:
        """The state to add to ``q`` (same shape as ``q``) for a block in ``layout``, or None to restart."""
        if self.q is None:
            return None
        prev, old = self.q, self.layout
        same_grid = old.size == layout.size and old.batch == layout.batch
        if same_grid and (not self.align or (old.window, old.shift) == (layout.window, layout.shift)):
            return prev if prev.shape == q.shape else None  # align=False: index by index, shift not undone
        grid = old.to_grid(prev)
        if not same_grid:
            grid = merge_grid_state(grid, q.shape[1] * q.shape[-1])
            if grid is None or tuple(grid.shape[1:-1]) != tuple(layout.size):
                return None
        out = layout.from_grid(grid, q.shape[1])
        return out if out.shape == q.shape else None

    def update(self, qhat: torch.Tensor, layout: Layout) -> None:
        self.q, self.layout = qhat, layout


# ---------------------------------------------------------------------------------------------------- layers
class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative position bias (Swin), RecA-capable."""

    def __init__(self, dim: int, heads: int, window: Sequence[int], qkv_bias: bool = True):
        super().__init__()
        if dim % heads:
            raise SalsegError(f"attention width {dim} is not divisible by {heads} heads")
        self.dim, self.heads, self.window = dim, heads, tuple(window)
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros(math.prod(2 * w - 1 for w in window), heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self._index_cache: dict = {}

    def bias(self, window: Sequence[int]) -> torch.Tensor:
        window = tuple(window)
        if window not in self._index_cache:
            self._index_cache[window] = relative_position_index(window, self.window)
        idx = self._index_cache[window].to(self.relative_position_bias_table.device)
        n = idx.shape[0]
        return self.relative_position_bias_table[idx.reshape(-1)].reshape(n, n, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, window: Sequence[int], mask: torch.Tensor | None = None,
                state: RecAState | None = None, layout: Layout | None = None) -> torch.Tensor:
        bw, n, c = x.shape
        q, k, v = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if state is not None:
            prev = state.previous(layout, q)
            if prev is not None:
                q = q + prev  # Qhat_i = Q_i + Qhat_{i-1}; no detach
            state.update(q, layout)  # the UNSCALED running sum goes on
        attn = (q * self.scale) @ k.transpose(-2, -1) + self.bias(window).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, self.heads, n, n) + mask[None, :, None].to(attn.dtype)
            attn = attn.view(bw, self.heads, n, n)
        out = (attn.softmax(-1) @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj(out)


class DropPath(nn.Module):
    """Stochastic depth per sample (identity in eval mode or with rate 0)."""

    def __init__(self, rate: float = 0.0):
        super().__init__()
        self.rate = float(rate)

    def forward(self, x):
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class Mlp(nn.Sequential):
    def __init__(self, dim: int, ratio: float = 4.0):
        hidden = int(dim * ratio)
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)


class SwinBlock(nn.Module):
    """norm -> (shifted) window attention -> residual; norm -> MLP -> residual. Input ``(B, *S, C)``."""

    def __init__(self, dim: int, heads: int, window: Sequence[int], shifted: bool, mlp_ratio: float = 4.0,
                 drop_path: float = 0.0, qkv_bias: bool = True):
        super().__init__()
        self.window = tuple(window)
        self.shift = tuple(w // 2 for w in window) if shifted else (0,) * len(window)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window, qkv_bias)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, state: RecAState | None = None) -> torch.Tensor:
        b, *size = x.shape[:-1]
        nd = len(size)
        window, shift = effective_window(size, self.window, self.shift)
        padded = tuple(math.ceil(s / w) * w for s, w in zip(size, window))
        h = self.norm1(x)
        pad = []
        for s, p in reversed(list(zip(size, padded))):
            pad += [0, p - s]
        h = F.pad(h, [0, 0] + pad)
        dims = tuple(range(1, 1 + nd))
        if any(shift):
            h = torch.roll(h, tuple(-s for s in shift), dims=dims)
        mask = shift_mask(padded, window, shift, x.device)
        layout = Layout(b, tuple(size), padded, window, shift)
        h = self.attn(window_partition(h, window), window, mask, state, layout)
        h = window_reverse(h, window, padded, b)
        if any(shift):
            h = torch.roll(h, shift, dims=dims)
        h = h[(slice(None), *[slice(0, s) for s in size])]
        x = x + self.drop_path(h)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x downsampling per axis: concat of the 2^d neighbours -> LayerNorm -> Linear to 2C (no bias)."""

    def __init__(self, dim: int, nd: int):
        super().__init__()
        self.norm = nn.LayerNorm(2 ** nd * dim)
        self.reduction = nn.Linear(2 ** nd * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[1:-1]
        if any(s % 2 for s in size):  # pad odd axes at the end (as MONAI does)
            pad = []
            for s in reversed(size):
                pad += [0, s % 2]
            x = F.pad(x, [0, 0] + pad)
        parts = [x[(slice(None), *off, slice(None))] for off in
                 itertools.product(*[(slice(0, None, 2), slice(1, None, 2))] * len(size))]
        return self.reduction(self.norm(torch.cat(parts, -1)))


class PatchExpand(nn.Module):
    """Swin-Unet's upsampling: Linear(C -> scale^d * C_out) then depth-to-space by ``scale`` -> LayerNorm(C_out)."""

    def __init__(self, dim: int, nd: int, scale: int = 2, out_dim: int | None = None):
        super().__init__()
        self.nd, self.scale = nd, scale
        self.out_dim = out_dim if out_dim is not None else dim // scale
        self.expand = nn.Linear(dim, scale ** nd * self.out_dim, bias=False)
        self.norm = nn.LayerNorm(self.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, *size = x.shape[:-1]
        nd, s = self.nd, self.scale
        x = self.expand(x).reshape(b, *size, *([s] * nd), self.out_dim)
        perm = [0]
        for a in range(nd):
            perm += [1 + a, 1 + nd + a]
        x = x.permute(*perm, 1 + 2 * nd).reshape(b, *[n * s for n in size], self.out_dim)
        return self.norm(x)


class SwinStage(nn.Module):
    """``depth`` Swin blocks (alternating plain / shifted windows), then an optional downsample."""

    def __init__(self, dim: int, depth: int, heads: int, window: Sequence[int], drop_path: Sequence[float] = (),
                 mlp_ratio: float = 4.0, downsample: nn.Module | None = None, upsample: nn.Module | None = None):
        super().__init__()
        dp = list(drop_path) or [0.0] * depth
        self.blocks = nn.ModuleList(SwinBlock(dim, heads, window, i % 2 == 1, mlp_ratio, dp[i])
                                    for i in range(depth))
        self.downsample = downsample
        self.upsample = upsample

    def forward(self, x: torch.Tensor, state: RecAState | None = None) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x, state)
        if self.downsample is not None:
            x = self.downsample(x)
        if self.upsample is not None:
            x = self.upsample(x)
        return x


def stage_states(n_stages: int, attention: str, strategy: str, align: bool) -> list[RecAState | None]:
    """One RecA state per encoder stage: fresh per stage (ISTS), one shared (STS), or none (baseline)."""
    if attention != "reca":
        return [None] * n_stages
    if strategy == "sts":
        shared = RecAState(align)
        return [shared] * n_stages
    return [RecAState(align) for _ in range(n_stages)]


def init_swin_weights(module: nn.Module) -> None:
    """Swin's init: Linear ~ trunc_normal(0.02) with zero bias, LayerNorm weight 1 bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
