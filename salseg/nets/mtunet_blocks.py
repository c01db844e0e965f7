"""Building blocks of MT-UNet (Wang et al., "Mixed Transformer U-Net"), laid out like the released ACDC code.

Token tensors are ``(B, N, C)`` with the grid size ``(H, W)`` passed alongside (the release assumed square grids).

EA module = x + LGG-SA(LN(x)), then x + EA(LN(x)):
- LGG-SA (``CSAttention``): multi-head self-attention inside 4x4 windows (local); each window is pooled to one token
  by a learned softmax over its 16 positions (``DlightConv``); axial row/column attention between the window tokens
  whose scores are weighted by a learned Gaussian of the distance (``GaussianTrans``, global); the global result is
  upsampled bilinearly (x4, corners aligned) and fused with the local result by a 1x1 conv over the concatenation.
  A grid that is not a multiple of 4 is padded the release's way: zeros, except the bottom-right corner block,
  which repeats the last rows/columns of the image; the padding is cropped off at the end.
- EA (``MEAttention``): external attention with 64 learned memory slots: Linear(C -> 4C) split into 32 heads, scores
  against the memory (Linear(C/8 -> 64)), softmax over tokens then L1-normalised over slots, Linear(64 -> C/8)
  back, Linear(4C -> C).
RecA (spec §2) acts on the local window self-attention only (``WindowSelfAttention`` with a RecA state).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from salseg.nets.swin import Layout, RecAState, window_partition, window_reverse


class ConvBNReLU(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 1, activation=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.activation = activation

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.relu(x) if self.activation else x


class DoubleConv(nn.Module):
    """conv3-BN-ReLU, conv3-BN, then h + BN(conv1x1(h)), ReLU (the release's residual form)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Sequential(ConvBNReLU(cin, cout, 3), ConvBNReLU(cout, cout, 3, activation=False))
        self.conv1 = nn.Conv2d(cout, cout, 1)
        self.relu = nn.ReLU()
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        h = self.conv(x)
        return self.relu(h + self.bn(self.conv1(h)))


def pad_like_release(x: torch.Tensor, win: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, Hp, Wp), multiples of ``win``: zeros + the bottom-right corner block from the image."""
    b, c, h, w = x.shape
    hp, wp = math.ceil(h / win) * win, math.ceil(w / win) * win
    if (hp, wp) == (h, w):
        return x
    new = x.new_zeros((b, c, hp, wp))
    new[:, :, :h, :w] = x
    if hp > h and wp > w:
        new[:, :, h:, w:] = x[:, :, h - hp:, w - wp:]
    return new


class WindowSelfAttention(nn.Module):
    """Multi-head self-attention inside windows (the release's ``Attention`` in window mode), RecA-capable."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.query_layer = nn.Linear(dim, dim)
        self.key_layer = nn.Linear(dim, dim)
        self.value_layer = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, state: RecAState | None = None, layout: Layout | None = None):
        bw, n, c = x.shape  # (B * windows, N, C)

        def split(t):
            return t.view(bw, n, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.query_layer(x)), split(self.key_layer(x)), split(self.value_layer(x))
        if state is not None:
            prev = state.previous(layout, q)
            if prev is not None:
                q = q + prev  # Qhat_i = Q_i + Qhat_{i-1}, no detach
            state.update(q, layout)
        attn = ((q / math.sqrt(self.head_dim)) @ k.transpose(-1, -2)).softmax(-1)
        return self.out((attn @ v).transpose(1, 2).reshape(bw, n, c))


class AxialScores(nn.Module):
    """The release's ``Attention`` in axial mode: single-head row and column scores (unscaled) and the values.

    Its ``out`` projection exists (and counts in the reference's 79,075,064) but the axial path never uses it, so it
    receives no gradient — kept so parameter names and counts equal the reference's.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.query_layer = nn.Linear(dim, dim)
        self.key_layer = nn.Linear(dim, dim)
        self.value_layer = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)  # unused in axial mode (as in the reference)

    def forward(self, x: torch.Tensor):  # x (B, h, w, C)
        q, k, v = self.query_layer(x), self.key_layer(x), self.value_layer(x)
        rows = q @ k.transpose(-1, -2)  # (B, h, w, w): query (r, c) against keys (r, c')
        cols = q.transpose(1, 2) @ k.transpose(1, 2).transpose(-1, -2)  # (B, w, h, h): (c, r) against (r', c)
        return rows, cols, v


class GaussianTrans(nn.Module):
    """Axial attention re-weighted by a learned Gaussian of the distance, summed over the row and the column.

    ``bias`` is added to every logit of a softmax, so it cancels exactly: like the reference's, its gradient is 0.
    """

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(-torch.abs(torch.randn(1)))
        self.shift = nn.Parameter(torch.abs(torch.randn(1)))

    def forward(self, rows, cols, v):  # rows (B,h,w,w), cols (B,w,h,h), v (B,h,w,C)
        h, w = v.shape[1], v.shape[2]
        dw = (torch.arange(w, device=v.device)[None, :] - torch.arange(w, device=v.device)[:, None]) ** 2
        dh = (torch.arange(h, device=v.device)[None, :] - torch.arange(h, device=v.device)[:, None]) ** 2
        ax = (rows - (self.shift * dw.to(v.dtype) + self.bias)).softmax(-1)  # [c, c'] = (c' - c)^2
        ay = (cols - (self.shift * dh.to(v.dtype) + self.bias)).softmax(-1)  # [r, r'] = (r' - r)^2
        return torch.einsum("brcw,brwd->brcd", ax, v) + torch.einsum("bcrh,bhcd->brcd", ay, v)


class DlightConv(nn.Module):
    """Pools each window to one token with a learned softmax over its positions (from the window mean)."""

    def __init__(self, dim: int, win: int):
        super().__init__()
        self.linear = nn.Linear(dim, win * win)

    def forward(self, x):  # (B, p1, p2, N, C) -> (B, p1, p2, C)
        prob = self.linear(x.mean(-2)).softmax(-1)
        return (x * prob.unsqueeze(-1)).sum(-2)


class CSAttention(nn.Module):
    """Local-global Gaussian-weighted self-attention (LGG-SA)."""

    def __init__(self, dim: int, heads: int, win: int):
        super().__init__()
        self.win = win
        self.win_atten = nn.Module()
        self.win_atten.attention = WindowSelfAttention(dim, heads)
        self.dlightconv = DlightConv(dim, win)
        self.global_atten = AxialScores(dim)
        self.gaussiantrans = GaussianTrans()
        self.queeze = nn.Conv2d(2 * dim, dim, 1)

    def forward(self, x: torch.Tensor, size: tuple, state: RecAState | None = None):
        b, n, c = x.shape
        h, w = size
        grid = pad_like_release(x.transpose(1, 2).reshape(b, c, h, w), self.win).permute(0, 2, 3, 1)
        padded = tuple(grid.shape[1:3])
        p1, p2 = padded[0] // self.win, padded[1] // self.win
        layout = Layout(b, (h, w), padded, (self.win, self.win), (0, 0))
        local = self.win_atten.attention(window_partition(grid, (self.win, self.win)), state, layout)
        local_grid = window_reverse(local, (self.win, self.win), padded, b).permute(0, 3, 1, 2)  # (B, C, Hp, Wp)
        pooled = self.dlightconv(local.view(b, p1, p2, self.win * self.win, c))  # (B, p1, p2, C)
        glob = self.gaussiantrans(*self.global_atten(pooled)).permute(0, 3, 1, 2)
        glob = F.interpolate(glob, scale_factor=self.win, mode="bilinear", align_corners=True)
        out = self.queeze(torch.cat([glob, local_grid], 1))[:, :, :h, :w]
        return out.flatten(2).transpose(1, 2)


class MEAttention(nn.Module):
    """External attention with ``slots`` memory units shared by all tokens (4x widened, 32 heads for 8)."""

    def __init__(self, dim: int, heads: int, slots: int = 64, coef: int = 4):
        super().__init__()
        self.heads = heads * coef
        self.query_liner = nn.Linear(dim, dim * coef)
        self.linear_0 = nn.Linear(dim * coef // self.heads, slots)
        self.linear_1 = nn.Linear(slots, dim * coef // self.heads)
        self.proj = nn.Linear(dim * coef, dim)

    def forward(self, x):
        b, n, _ = x.shape
        x = self.query_liner(x).view(b, n, self.heads, -1).transpose(1, 2)
        attn = self.linear_0(x).softmax(-2)
        attn = attn / (1e-9 + attn.sum(-1, keepdim=True))
        return self.proj(self.linear_1(attn).transpose(1, 2).reshape(b, n, -1))


class EAModule(nn.Module):
    """x + LGG-SA(LN(x)); x + EA(LN(x)) (LayerNorm eps 1e-6)."""

    def __init__(self, dim: int, heads: int = 8, win: int = 4, slots: int = 64):
        super().__init__()
        self.SlayerNorm = nn.LayerNorm(dim, eps=1e-6)
        self.ElayerNorm = nn.LayerNorm(dim, eps=1e-6)
        self.CSAttention = CSAttention(dim, heads, win)
        self.EAttention = MEAttention(dim, heads, slots)

    def forward(self, x, size, state: RecAState | None = None):
        x = x + self.CSAttention(self.SlayerNorm(x), size, state)
        return x + self.EAttention(self.ElayerNorm(x))
