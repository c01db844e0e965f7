"""MedSegDiff (Wu et al., MIDL 2023), paper form, 2D, any patch size from the plans.

eps_theta(x_t, I, t): an image encoder and a noisy-mask encoder (ResBlocks with the time embedding added), at every
scale k
  - FF-Parser on the mask features: m' = irfft2(W_k * rfft2(m)), W_k a learnable complex map
    (C_k, H_k, W_k // 2 + 1) sized from the feature map of the configured patch;
  - dynamic conditional encoding A = (LN(m_I) * LN(m_x')) * m_I, fed forward on the image branch
    (LN = LayerNorm over (C, H, W), implemented as GroupNorm(1, C));
  - skip = A + m_x';
bottleneck = sum of both branches -> ResBlock, attention, ResBlock -> U-Net decoder with the skips -> eps.
Masks: one channel per foreground class (1 for a binary task), scaled to [-1, 1]. Loss: MSE(eps, eps_hat).
"""

from __future__ import annotations

import torch
from torch import nn

from salseg.errors import ConfigError
from salseg.nets.blocks import conv_nd
from salseg.nets.diffusion.blocks import (AttentionBlock, Downsample, ResBlock, TimeEmbedding, Upsample,
                                          apply_spectrum_weight, group_norm, mask_setup, spectrum_weight)
from salseg.nets.diffusion.samplers import MaskDiffusion
from salseg.nets.diffusion.schedules import NoiseSchedule
from salseg.nets.registry import check_options, register_network

DEFAULT_MULTS = (1, 2, 4, 8)


class FFParser(nn.Module):
    """Learnable frequency filter. ``weight`` (C, H, W // 2 + 1, 2) = real/imag parts of the complex map, created
    here (never in forward), initialised to 1 + 0j (identity). A feature map of another size than the configured
    one (e.g. a whole image instead of a patch) uses the map resampled (bilinear, in fftshift order)."""

    def __init__(self, channels: int, size: tuple[int, int]):
        super().__init__()
        h, w = int(size[0]), int(size[1])
        weight = torch.zeros(channels, h, w // 2 + 1, 2)
        weight[..., 0] = 1.0
        self.size = (h, w)
        self.weight = nn.Parameter(weight)

    def complex_weight(self, h: int, w: int) -> torch.Tensor:
        return spectrum_weight(self.weight, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return apply_spectrum_weight(x, self.weight)


class MedSegDiff(MaskDiffusion):
    default_steps = 50
    validation_steps = 5

    def __init__(self, in_channels: int, num_classes: int, patch_size, *, width: int = 32,
                 mults=DEFAULT_MULTS, timesteps: int = 1000, schedule: str = "linear"):
        super().__init__(num_classes)
        patch, self.mask_channels = mask_setup(num_classes, patch_size, 2 ** (len(mults) - 1), "medsegdiff")
        self.patch_size = patch
        self.schedule = NoiseSchedule(schedule, timesteps)
        chs = [int(width) * int(m) for m in mults]
        emb, conv = 4 * int(width), conv_nd(2)
        self.time = TimeEmbedding(int(width), emb)
        self.img_in = conv(in_channels, chs[0], 3, padding=1)
        self.mask_in = conv(self.mask_channels, chs[0], 3, padding=1)
        self.img_blocks, self.mask_blocks = nn.ModuleList(), nn.ModuleList()
        self.ff_parsers, self.norm_img, self.norm_mask = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        self.img_down, self.mask_down = nn.ModuleList(), nn.ModuleList()
        for k, c in enumerate(chs):
            prev = chs[max(k - 1, 0)]
            self.img_blocks.append(ResBlock(prev, c, emb))
            self.mask_blocks.append(ResBlock(prev, c, emb))
            self.ff_parsers.append(FFParser(c, (patch[0] // 2 ** k, patch[1] // 2 ** k)))
            self.norm_img.append(nn.GroupNorm(1, c))
            self.norm_mask.append(nn.GroupNorm(1, c))
            if k < len(chs) - 1:
                self.img_down.append(Downsample(c))
                self.mask_down.append(Downsample(c))
        self.mid1, self.mid_attn, self.mid2 = ResBlock(chs[-1], chs[-1], emb), AttentionBlock(chs[-1]), \
            ResBlock(chs[-1], chs[-1], emb)
        self.ups, self.dec_blocks = nn.ModuleList(), nn.ModuleList()
        for k in reversed(range(len(chs) - 1)):
            self.ups.append(Upsample(chs[k + 1], chs[k]))
            self.dec_blocks.append(ResBlock(2 * chs[k], chs[k], emb))
        self.out = nn.Sequential(group_norm(chs[0]), nn.SiLU(), conv(chs[0], self.mask_channels, 3, padding=1))

    def denoise(self, x_t: torch.Tensor, image: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """eps_hat(x_t, I, t); x_t (B, K, H, W) in [-1, 1]-scaled mask space, image (B, C, H, W)."""
        emb = self.time(t)
        hi, hx = self.img_in(image), self.mask_in(x_t)
        skips = []
        last = len(self.img_blocks) - 1
        for k in range(last + 1):
            hi = self.img_blocks[k](hi, emb)
            hx = self.ff_parsers[k](self.mask_blocks[k](hx, emb))
            hi = self.norm_img[k](hi) * self.norm_mask[k](hx) * hi        # dynamic conditional encoding
            if k < last:
                skips.append(hi + hx)
                hi, hx = self.img_down[k](hi), self.mask_down[k](hx)
        h = self.mid2(self.mid_attn(self.mid1(hi + hx, emb)), emb)
        for up, block in zip(self.ups, self.dec_blocks):
            skip = skips.pop()
            h = block(torch.cat([up(h, size=skip.shape[-2:]), skip], dim=1), emb)
        return self.out(h)


def resolve_patch_size(plans: dict | None, patch_size, dim: int, name: str) -> tuple[int, ...]:
    patch = patch_size if patch_size is not None else (plans or {}).get("patch_size")
    if patch is None:
        raise ConfigError(f"{name} needs a patch size: give plans with 'patch_size' or the option patch_size")
    patch = [int(p) for p in patch]
    if dim == 2 and len(patch) == 3 and patch[0] == 1:
        patch = patch[1:]
    return tuple(patch)


PRESETS = {
    "paper": dict(width=32, mults=DEFAULT_MULTS, timesteps=1000, schedule="linear"),
    # the official V1 code's MedSegDiff-B / MedSegDiff++ flags (README), at its 256 px image size
    "official-b": dict(width=128, mults=(1, 1, 2, 2, 4, 4), res_blocks=2, heads=1, attention_resolutions=(16,),
                       scale_shift=False, learn_sigma=True, timesteps=1000, schedule="linear", cal_fusion="official"),
    "official-++": dict(width=512, mults=(1, 1, 2, 2, 4, 4), res_blocks=12, heads=8, attention_resolutions=(24,),
                        scale_shift=True, learn_sigma=True, timesteps=1000, schedule="linear",
                        cal_fusion="official"),
    "port": dict(width=64, mults=(1, 2, 4, 8), timesteps=1000, schedule="cosine"),
}


def build_preset(preset: str, in_channels: int, num_classes: int, patch, options: dict):
    """The MedSegDiff of ``preset`` with ``options`` overriding the preset's values (unknown ones refused)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown medsegdiff preset {preset!r}; choose one of {', '.join(PRESETS)}")
    values = dict(PRESETS[preset])
    check_options("medsegdiff", options, known=[*values, "preset", "patch_size"])
    values.update(options)
    values["mults"] = tuple(int(m) for m in values["mults"])
    if preset == "paper":
        return MedSegDiff(in_channels, num_classes, patch, width=int(values["width"]), mults=values["mults"],
                          timesteps=int(values["timesteps"]), schedule=values["schedule"])
    if preset == "port":
        from salseg.nets.diffusion.port_unet import MedSegDiffPort

        return MedSegDiffPort(in_channels, num_classes, patch, width=int(values["width"]), mults=values["mults"],
                              timesteps=int(values["timesteps"]), schedule=values["schedule"])
    from salseg.nets.diffusion.official import MedSegDiffOfficial

    values["attention_resolutions"] = tuple(int(r) for r in values["attention_resolutions"])
    return MedSegDiffOfficial(in_channels, num_classes, patch, **values)


@register_network("medsegdiff", dims=(2,), kind="diffusion", divisor=2 ** (len(DEFAULT_MULTS) - 1),
                  recipe={"optimizer": "adamw", "lr": 1e-4, "weight_decay": 0.0, "batch_size": 8}, presets=PRESETS,
                  description="MedSegDiff (Wu et al. 2023): DPM segmenter with dynamic conditional encoding and "
                              "FF-Parser, 2D; presets paper, official-b, official-++, port")
def medsegdiff(in_channels: int, num_classes: int, dim: int, plans: dict | None, *, preset: str = "paper",
               patch_size=None, deep_supervision: bool = False, **options):
    """MedSegDiff, 2D, in one of ``PRESETS`` (option ``preset``; its other options override the preset's values).
    ``deep_supervision`` is ignored (diffusion models have none)."""
    if dim != 2:
        raise ConfigError(f"medsegdiff is 2D only (asked for {dim}D)")
    return build_preset(str(preset), in_channels, num_classes,
                        resolve_patch_size(plans, patch_size, dim, "medsegdiff"), options)
