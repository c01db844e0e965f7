"""LDSeg's four networks with the layer lists of its TensorFlow release (FahimZaman/LDSeg, ``utilities/model.py``
for 2D and ``model3D.py`` for 3D), so parameter counts equal the release's at the same input size.

Shared blocks: ``ResConv`` (3x3 conv-BN-swish, 3x3 conv-BN, dropout; + 1x1 conv-BN shortcut; swish), the denoiser's
``TimeResBlock`` (GN(4)-swish-3x3 conv, + Dense(swish(t_emb)), GN(4)-swish-3x3 conv, + residual (1x1 conv when the
width changes)) and single-head attention (GN, dense q/k/v/proj over channels).
- label encoder: ResConv at widths 16, 32, 64, 64, 32 with a x2 reduction between them (2D: max pooling; 3D: stride-2
  3x3 conv), a 1x1 (3D: 2x2x2, "same") conv to 1 channel and a LayerNorm over the whole latent with elementwise
  gain and bias (so sized by the patch);
- label decoder: four (2D: stride-2 transposed 3x3 conv; 3D: nearest x2 + 3x3 conv) + ResConv at 32, 64, 64, 32,
  swish, 1x1 conv to the classes, BatchNorm (logits; the release applies softmax after it);
- image encoder, 2D: 3x3 conv to 16, four conv blocks (1x1 residual; swish, 3x3 conv, dropout, swish, 3x3 conv; +;
  swish; stride-2 3x3 conv; GN(4)) at 32, 64, 64, 32 with 8-head attention after the third and the fourth, a 1x1
  conv to 1 channel, 1-head attention, swish, BatchNorm; 3D: conv blocks with grouped (4) 3x3 convs and max pooling,
  no attention, a 3x3 conv to 1 channel, BatchNorm;
- denoiser: U-Net over concat[noisy label latent, image latent], widths 16/32/64, 2 residual blocks per level,
  attention at levels 1 and 2 and in the middle, sinusoidal(64) -> Dense(swish) -> Dense time embedding; the 2D
  release keeps the stem and every downsampling as skips (3 blocks per decoder level), the 3D one only the blocks.
Deviation options (the release's behaviour one switch away, the fix by default): ``attention_residual``
(``"input"``: add attention to its input; ``"release"``: to the GroupNorm-ed input, as the release does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from salseg.errors import ConfigError
from salseg.nets.blocks import conv_nd
from salseg.nets.diffusion.blocks import crop_to, pad_to, sinusoidal

ATTENTION_RESIDUALS = ("input", "release")


def _bn(dim: int, c: int) -> nn.Module:
    return (nn.BatchNorm2d if dim == 2 else nn.BatchNorm3d)(c, eps=1e-3, momentum=0.01)


class ResConv(nn.Module):
    def __init__(self, cin: int, cout: int, dim: int, dropout: float = 0.2):
        super().__init__()
        conv = conv_nd(dim)
        self.conv1, self.bn1 = conv(cin, cout, 3, padding=1), _bn(dim, cout)
        self.conv2, self.bn2 = conv(cout, cout, 3, padding=1), _bn(dim, cout)
        self.drop = nn.Dropout(dropout)
        self.short, self.bn_short = conv(cin, cout, 1), _bn(dim, cout)

    def forward(self, x):
        h = self.drop(self.bn2(self.conv2(F.silu(self.bn1(self.conv1(x))))))
        return F.silu(self.bn_short(self.short(x)) + h)


class Attention(nn.Module):
    """Attention over all positions with dense q/k/v/proj over channels (the release's AttentionBlock with
    ``heads=1``, its MultiHeadAttentionBlock otherwise)."""

    def __init__(self, channels: int, groups: int, heads: int = 1, residual: str = "input"):
        super().__init__()
        if residual not in ATTENTION_RESIDUALS:
            raise ConfigError(f"unknown attention_residual {residual!r}; choose {' or '.join(ATTENTION_RESIDUALS)}")
        self.norm = nn.GroupNorm(groups, channels, eps=1e-3)
        self.q, self.k, self.v, self.proj = (nn.Linear(channels, channels) for _ in range(4))
        self.heads, self.residual = int(heads), residual

    def forward(self, x):
        b, c = x.shape[:2]
        h = self.norm(x)
        tokens = h.flatten(2).transpose(1, 2)                                  # (B, N, C)
        split = lambda t: t.reshape(b, -1, self.heads, c // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q(tokens)), split(self.k(tokens)), split(self.v(tokens))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, -1, c)
        out = self.proj(out).transpose(1, 2).reshape(x.shape)
        return (h if self.residual == "release" else x) + out


class TimeResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int, dim: int, groups: int = 4):
        super().__init__()
        conv = conv_nd(dim)
        self.residual = nn.Identity() if cin == cout else conv(cin, cout, 1)
        self.temb = nn.Linear(emb, cout)
        self.norm1, self.conv1 = nn.GroupNorm(groups, cin, eps=1e-3), conv(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(groups, cout, eps=1e-3), conv(cout, cout, 3, padding=1)

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(F.silu(emb)).reshape(*emb.shape[:1], -1, *([1] * (x.ndim - 2)))
        return self.conv2(F.silu(self.norm2(h))) + self.residual(x)


def _up(cin: int, cout: int, dim: int) -> nn.Module:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv_nd(dim)(cin, cout, 3, padding=1))


class LatentNorm(nn.Module):
    """LayerNorm over (C, *S) of the latent with elementwise gain and bias of the configured latent size."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.weight, self.bias = nn.Parameter(torch.ones(self.shape)), nn.Parameter(torch.zeros(self.shape))

    def forward(self, z):
        if tuple(z.shape[1:]) != self.shape:
            raise ConfigError(f"ldseg (release architecture) was built for latents of shape {list(self.shape)} "
                              f"(the training patch / 16); got {list(z.shape[1:])}")
        return F.layer_norm(z, self.shape, self.weight, self.bias, eps=1e-3)


class LabelEncoder(nn.Module):
    def __init__(self, in_channels: int, latent_shape, dim: int, widths=(16, 32, 64, 64, 32)):
        super().__init__()
        conv = conv_nd(dim)
        self.blocks, self.downs = nn.ModuleList(), nn.ModuleList()
        cin = in_channels
        for i, w in enumerate(widths):
            self.blocks.append(ResConv(cin, w, dim))
            if i < len(widths) - 1:
                self.downs.append(nn.MaxPool2d(2) if dim == 2 else conv(w, w, 3, stride=2, padding=1))
            cin = w
        # 2D: 1x1; 3D: 2x2x2 with TF's "same" padding (one voxel after, none before)
        self.out = conv(widths[-1], 1, 1 if dim == 2 else 2)
        self.pad = 0 if dim == 2 else 1
        self.norm = LatentNorm(latent_shape)

    def forward(self, y):
        h = y
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i < len(self.downs):
                h = self.downs[i](h)
        if self.pad:
            h = F.pad(h, (0, 1) * (h.ndim - 2))
        return self.norm(self.out(h))


class LabelDecoder(nn.Module):
    def __init__(self, num_classes: int, dim: int, widths=(32, 64, 64, 32)):
        super().__init__()
        self.ups, self.blocks = nn.ModuleList(), nn.ModuleList()
        cin = 1
        for w in widths:
            self.ups.append(nn.ConvTranspose2d(cin, w, 3, stride=2, padding=1, output_padding=1) if dim == 2
                            else _up(cin, w, dim))
            self.blocks.append(ResConv(w, w, dim))
            cin = w
        self.out, self.bn = conv_nd(dim)(widths[-1], num_classes, 1), _bn(dim, num_classes)

    def forward(self, z):
        h = z
        for up, block in zip(self.ups, self.blocks):
            h = block(up(h))
        return self.bn(self.out(F.silu(h)))


class ConvDown(nn.Module):
    """The image encoder's conv block (2D: stride-2 conv down; 3D: grouped convs, max pooling), then GN(4)."""

    def __init__(self, cin: int, cout: int, dim: int, dropout: float = 0.2):
        super().__init__()
        conv = conv_nd(dim)
        groups = 1 if dim == 2 else 4
        self.residual = conv(cin, cout, 1)
        self.conv1 = conv(cin, cout, 3, padding=1, groups=groups)
        self.conv2 = conv(cout, cout, 3, padding=1, groups=groups)
        self.drop = nn.Dropout(dropout)
        self.down = conv(cout, cout, 3, stride=2, padding=1) if dim == 2 else nn.MaxPool3d(2)
        self.norm = nn.GroupNorm(4, cout, eps=1e-3)

    def forward(self, x):
        h = self.conv2(F.silu(self.drop(self.conv1(F.silu(x)))))
        return self.norm(self.down(F.silu(h + self.residual(x))))


class ImageEncoder(nn.Module):
    def __init__(self, in_channels: int, dim: int, width: int = 16, residual: str = "input"):
        super().__init__()
        conv = conv_nd(dim)
        self.stem = conv(in_channels, width, 3, padding=1)
        mults = (2, 4, 4, 2)
        self.blocks = nn.ModuleList(ConvDown(width * (mults[i - 1] if i else 1), width * m, dim)
                                    for i, m in enumerate(mults))
        self.dim = dim
        if dim == 2:
            self.attn = nn.ModuleDict({"2": Attention(4 * width, 8, heads=8, residual="input"),
                                       "3": Attention(2 * width, 8, heads=8, residual="input")})
            self.out = conv(2 * width, 1, 1)
            self.out_attn = Attention(1, 1, heads=1, residual="input")
        else:
            self.out = conv(2 * width, 1, 3, padding=1)
        self.bn = _bn(dim, 1)

    def forward(self, x):
        h = self.stem(x)
        for i, block in enumerate(self.blocks):
            h = block(h)
            if self.dim == 2 and str(i) in self.attn:
                h = self.attn[str(i)](h)
        h = self.out(h)
        if self.dim == 2:
            h = F.silu(self.out_attn(h))
        return self.bn(h)


class Denoiser(nn.Module):
    def __init__(self, dim: int, widths=(16, 32, 64), attention=(False, True, True), emb: int = 64,
                 res_blocks: int = 2, residual: str = "input"):
        super().__init__()
        conv = conv_nd(dim)
        self.dim, self.emb_dim = dim, emb
        self.stem = conv(2, widths[0], 3, padding=1)
        self.time = nn.Sequential(nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, emb))
        keep_all = dim == 2  # the 2D release also keeps the stem and the downsamplings as skips
        skips = [widths[0]] if keep_all else []
        self.down = nn.ModuleList()
        ch = widths[0]
        for i, w in enumerate(widths):
            for _ in range(res_blocks):
                self.down.append(TimeResBlock(ch, w, emb, dim))
                ch = w
                if attention[i]:
                    self.down.append(Attention(w, 4, residual=residual))
                skips.append(w)
            if w != widths[-1]:
                self.down.append(conv(w, w, 3, stride=2, padding=1))
                if keep_all:
                    skips.append(w)
        self.mid = nn.ModuleList([TimeResBlock(ch, ch, emb, dim), Attention(ch, 4, residual=residual),
                                  TimeResBlock(ch, ch, emb, dim)])
        self.up = nn.ModuleList()
        for i in reversed(range(len(widths))):
            for _ in range(res_blocks + (1 if keep_all else 0)):
                self.up.append(TimeResBlock(ch + skips.pop(), widths[i], emb, dim))
                ch = widths[i]
                if attention[i]:
                    self.up.append(Attention(widths[i], 4, residual=residual))
            if i != 0:
                self.up.append(_up(widths[i], widths[i], dim))
        self.out = nn.Sequential(nn.GroupNorm(4, ch, eps=1e-3), nn.SiLU(), conv(ch, 1, 3, padding=1))
        self.keep_all = keep_all

    def forward(self, z_t: torch.Tensor, cond: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """eps_hat; latents of any size (padded at their end to a multiple of 4 and cropped back; the release needs
        multiples of 4)."""
        x, size = pad_to(torch.cat([z_t, cond], dim=1), 4)
        emb = self.time(sinusoidal(t, self.emb_dim).to(z_t.dtype))
        h = self.stem(x)
        skips = [h] if self.keep_all else []
        layers = list(self.down)
        for j, layer in enumerate(layers):
            h = layer(h, emb) if isinstance(layer, TimeResBlock) else layer(h)
            nxt = layers[j + 1] if j + 1 < len(layers) else None
            is_down = isinstance(layer, (nn.Conv2d, nn.Conv3d))
            if (is_down and self.keep_all) or (not is_down and not isinstance(nxt, Attention)):
                skips.append(h)
        for layer in self.mid:
            h = layer(h, emb) if isinstance(layer, TimeResBlock) else layer(h)
        for layer in self.up:
            if isinstance(layer, TimeResBlock):
                h = layer(torch.cat([h, skips.pop()], dim=1), emb)
            else:
                h = layer(h)
        return crop_to(self.out(h), size)
