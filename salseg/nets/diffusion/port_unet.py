"""MedSegDiff as the public PyTorch port ``med-seg-diff-pytorch`` 0.3.3 builds it (preset ``port``).

Layer list (defaults of the port: dim 64, dim_mults (1, 2, 4, 8), full attention at the deepest level only, 4 heads
of 32 channels, one mid transformer layer, GroupNorm(8); parameter counts in docs/diffusion.md):
- 7x7 input convs for the noisy mask and for the image; time: sinusoidal(dim) -> Linear(4 dim) -> GELU -> Linear;
- mask encoder per level: 2 ResnetBlocks (time as scale/shift of the first block), residual attention (linear
  attention, full attention at the last level), space-to-depth + 1x1 conv down (a 3x3 conv at the last level);
  an identical image encoder (a copy, own weights);
- conditioner per level on (mask features x, image features c): FF-Parser on x (a real map of ones (C, H, W) on the
  full fft2), c <- (LN(x') * LN(c)) * c with LN per pixel over channels (gain and bias), then a ResnetBlock: the
  image branch continues with it;
- middle: ResnetBlock on both branches, summed; transformer (attention + feed-forward) and a ResnetBlock;
- decoder with skips from the mask branch only, 2 ResnetBlocks + attention per level, nearest x2 + 3x3 conv;
  final ResnetBlock over concat[h, the 7x7 input features] and a 1x1 conv.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from salseg.nets.diffusion.blocks import mask_setup, sinusoidal
from salseg.nets.diffusion.samplers import MaskDiffusion
from salseg.nets.diffusion.schedules import NoiseSchedule


class ChannelNorm(nn.Module):
    """LayerNorm over channels at every pixel (the port's ``LayerNorm``): gain, optional bias."""

    def __init__(self, dim: int, bias: bool = False):
        super().__init__()
        self.g = nn.Parameter(torch.ones(1, dim, 1, 1))
        self.b = nn.Parameter(torch.zeros(1, dim, 1, 1)) if bias else None

    def forward(self, x):
        eps = 1e-5 if x.dtype == torch.float32 else 1e-3
        var, mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)
        out = (x - mean) * (var + eps).rsqrt() * self.g
        return out + self.b if self.b is not None else out


class PortBlock(nn.Module):
    def __init__(self, dim: int, dim_out: int, groups: int = 8):
        super().__init__()
        self.proj = nn.Conv2d(dim, dim_out, 3, padding=1)
        self.norm = nn.GroupNorm(groups, dim_out)

    def forward(self, x, scale_shift=None):
        x = self.norm(self.proj(x))
        if scale_shift is not None:
            x = x * (scale_shift[0] + 1) + scale_shift[1]
        return F.silu(x)


class PortResBlock(nn.Module):
    def __init__(self, dim: int, dim_out: int, time_dim: int | None = None, groups: int = 8):
        super().__init__()
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, 2 * dim_out)) if time_dim else None
        self.block1, self.block2 = PortBlock(dim, dim_out, groups), PortBlock(dim_out, dim_out, groups)
        self.res_conv = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()

    def forward(self, x, t=None):
        ss = None
        if self.mlp is not None and t is not None:
            ss = self.mlp(t)[..., None, None].chunk(2, dim=1)
        return self.block2(self.block1(x, ss)) + self.res_conv(x)


class PortAttention(nn.Module):
    """Residual multi-head attention; ``linear`` = the port's LinearAttention (softmax over features / positions)."""

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32, linear: bool = False):
        super().__init__()
        hidden = heads * dim_head
        self.heads, self.scale, self.linear = heads, dim_head ** -0.5, linear
        self.prenorm = ChannelNorm(dim)
        self.to_qkv = nn.Conv2d(dim, 3 * hidden, 1, bias=False)
        self.to_out = nn.Sequential(nn.Conv2d(hidden, dim, 1), ChannelNorm(dim)) if linear else nn.Conv2d(hidden, dim, 1)

    def forward(self, x):
        b, _, h, w = x.shape
        q, k, v = (t.reshape(b, self.heads, -1, h * w) for t in self.to_qkv(self.prenorm(x)).chunk(3, dim=1))
        if self.linear:
            q, k = q.softmax(dim=-2) * self.scale, k.softmax(dim=-1)
            out = torch.einsum("bhde,bhdn->bhen", torch.einsum("bhdn,bhen->bhde", k, v), q)
        else:
            attn = torch.einsum("bhdi,bhdj->bhij", q * self.scale, k).softmax(dim=-1)
            out = torch.einsum("bhij,bhdj->bhdi", attn, v)
        return x + self.to_out(out.reshape(b, -1, h, w))


class PortFeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(ChannelNorm(dim), nn.Conv2d(dim, dim * mult, 1), nn.GELU(),
                                 nn.Conv2d(dim * mult, dim, 1))

    def forward(self, x):
        return x + self.net(x)


class PortConditioning(nn.Module):
    def __init__(self, size: tuple[int, int], dim: int):
        super().__init__()
        self.ff_parser_attn_map = nn.Parameter(torch.ones(dim, size[0], size[1]))
        self.norm_input, self.norm_condition = ChannelNorm(dim, bias=True), ChannelNorm(dim, bias=True)
        self.block = PortResBlock(dim, dim)

    def forward(self, x, c):
        weight = self.ff_parser_attn_map
        if tuple(weight.shape[-2:]) != tuple(x.shape[-2:]):
            weight = F.interpolate(weight[None], size=x.shape[-2:], mode="bilinear", align_corners=True)[0]
        x = torch.fft.ifft2(torch.fft.fft2(x.float()) * weight.float()).real.to(c.dtype)
        return self.block(self.norm_input(x) * self.norm_condition(c) * c)


def _down(dim_in: int, dim_out: int, last: bool) -> nn.Module:
    if last:
        return nn.Conv2d(dim_in, dim_out, 3, padding=1)
    return nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(4 * dim_in, dim_out, 1))


def _up(dim_out: int, dim_in: int, last: bool) -> nn.Module:
    if last:
        return nn.Conv2d(dim_out, dim_in, 3, padding=1)
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(dim_out, dim_in, 3, padding=1))


def _encoder_level(dim_in: int, dim_out: int, time_dim: int, full_attn: bool, last: bool) -> nn.ModuleList:
    return nn.ModuleList([PortResBlock(dim_in, dim_in, time_dim), PortResBlock(dim_in, dim_in, time_dim),
                          PortAttention(dim_in, linear=not full_attn), _down(dim_in, dim_out, last)])


class PortUNet(nn.Module):
    def __init__(self, image_channels: int, mask_channels: int, patch_size, *, dim: int = 64, mults=(1, 2, 4, 8)):
        super().__init__()
        dims = [dim] + [dim * int(m) for m in mults]
        pairs = list(zip(dims[:-1], dims[1:]))
        n = len(pairs)
        full = [i == n - 1 for i in range(n)]
        time_dim = 4 * dim
        self.dim = dim
        self.init_conv = nn.Conv2d(mask_channels, dim, 7, padding=3)
        self.cond_init_conv = nn.Conv2d(image_channels, dim, 7, padding=3)
        self.time_mlp = nn.Sequential(nn.Linear(dim, time_dim), nn.GELU(), nn.Linear(time_dim, time_dim))
        size = [int(p) for p in patch_size]
        self.conditioners, self.downs, self.cond_downs = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for i, (a, b) in enumerate(pairs):
            self.conditioners.append(PortConditioning((size[0], size[1]), a))
            self.downs.append(_encoder_level(a, b, time_dim, full[i], i == n - 1))
            self.cond_downs.append(_encoder_level(a, b, time_dim, full[i], i == n - 1))
            if i < n - 1:
                size = [s // 2 for s in size]
        mid = dims[-1]
        self.mid_block1, self.cond_mid_block1 = PortResBlock(mid, mid, time_dim), PortResBlock(mid, mid, time_dim)
        self.mid_attn, self.mid_ff = PortAttention(mid), PortFeedForward(mid)
        self.mid_block2 = PortResBlock(mid, mid, time_dim)
        self.ups = nn.ModuleList()
        for i, (a, b) in enumerate(reversed(pairs)):
            self.ups.append(nn.ModuleList([PortResBlock(b + a, b, time_dim), PortResBlock(b + a, b, time_dim),
                                           PortAttention(b, linear=not full[n - 1 - i]), _up(b, a, i == n - 1)]))
        self.final_res_block = PortResBlock(2 * dim, dim, time_dim)
        self.final_conv = nn.Conv2d(dim, mask_channels, 1)
        self.divisor = 2 ** (n - 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = self.init_conv(x)
        r, c = x.clone(), self.cond_init_conv(cond)
        emb = self.time_mlp(sinusoidal(t, self.dim).to(x.dtype))
        skips = []
        for (b1, b2, attn, down), (cb1, cb2, cattn, cdown), conditioner in zip(self.downs, self.cond_downs,
                                                                               self.conditioners):
            x, c = b1(x, emb), cb1(c, emb)
            skips.append(x)
            x, c = attn(b2(x, emb)), cattn(cb2(c, emb))
            c = conditioner(x, c)
            skips.append(x)
            x, c = down(x), cdown(c)
        x = self.mid_block1(x, emb) + self.cond_mid_block1(c, emb)
        x = self.mid_block2(self.mid_ff(self.mid_attn(x)), emb)
        for b1, b2, attn, up in self.ups:
            x = b1(torch.cat([x, skips.pop()], dim=1), emb)
            x = attn(b2(torch.cat([x, skips.pop()], dim=1), emb))
            x = up(x)
        return self.final_conv(self.final_res_block(torch.cat([x, r], dim=1), emb))


class MedSegDiffPort(MaskDiffusion):
    """The port's diffusion wrapper: eps prediction, masks in [-1, 1], cosine schedule (T = 1000), MSE loss;
    sampling with salseg's samplers (the port samples with DDIM, eta 1, when asked for fewer steps than T)."""

    default_steps = 50
    validation_steps = 5

    def __init__(self, in_channels: int, num_classes: int, patch_size, *, width: int = 64, mults=(1, 2, 4, 8),
                 timesteps: int = 1000, schedule: str = "cosine"):
        super().__init__(num_classes)
        div = 2 ** (len(mults) - 1)
        patch, self.mask_channels = mask_setup(num_classes, patch_size, div, "medsegdiff (port preset)")
        self.patch_size = patch
        self.schedule = NoiseSchedule(schedule, timesteps)
        self.unet = PortUNet(in_channels, self.mask_channels, patch, dim=width, mults=mults)
        self.divisor = div

    def denoise(self, x_t: torch.Tensor, image: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.unet(x_t, t, image)
