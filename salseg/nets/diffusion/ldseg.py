"""LDSeg (Zaman et al., 2024): latent diffusion segmentation trained end to end, 2D and 3D.

Four networks trained together:
- label encoder: one-hot label -> ``latent_channels``-channel latent at 1/16 resolution, LayerNorm-standardised;
- image encoder: image -> latent of the same size, self-attention at the two coarsest levels (1/8, 1/16);
- denoiser: small U-Net over concat[image latent, noisy label latent], widths 16/32/64, 64-d time embedding,
  attention at the two lower levels (latents of any size: padded to a multiple of 4 inside);
- label decoder: latent -> class logits at full resolution (x16 up); softmax gives the label map.
Loss = CE + 2 (1 - soft Dice) + 1 MSE(eps, eps_hat); the decoder sees the denoised latent estimate
z0_hat = (z_t - sqrt(1 - a_t) eps_hat) / sqrt(a_t) clamped to [-latent_clip, latent_clip] (``decoder_input="z0"``)
or the release's z_t - eps_hat (``decoder_input="release"``). T = 1000, cosine schedule, DDIM 15 steps.
EMA of the denoiser (decay ``ema``, default 0.999, with the usual (1+n)/(10+n) warm-up): the trainer calls
``model.ema_update()`` after each optimiser step; sampling then uses the EMA denoiser.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from salseg.errors import ConfigError
from salseg.nets.blocks import conv_nd
from salseg.nets.diffusion import samplers
from salseg.nets.diffusion.blocks import (AttentionBlock, Downsample, ResBlock, TimeEmbedding, Upsample, crop_to,
                                          group_norm, one_hot, pad_to)
from salseg.nets.diffusion.samplers import DiffusionSegmenter
from salseg.nets.diffusion.schedules import NoiseSchedule
from salseg.nets.diffusion.medsegdiff import resolve_patch_size
from salseg.nets.registry import check_options, register_network

FACTOR = 16          # latent = input / 16
DECODER_INPUTS = ("z0", "release")
ARCHS = ("release", "compact")
LABEL_INPUTS = ("onehot", "index")


class LatentEncoder(nn.Module):
    """Input -> ResBlock per level, 4 stride-2 downsamplings (x16), optional attention per level, -> 1x1 conv."""

    def __init__(self, in_channels: int, out_channels: int, widths, *, dim: int, attention_levels=(),
                 standardise: bool = False):
        super().__init__()
        conv = conv_nd(dim)
        self.stem = conv(in_channels, widths[0], 3, padding=1)
        self.blocks, self.attn, self.downs = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for k in range(len(widths)):        # level k works at 1/2^k
            self.blocks.append(ResBlock(widths[max(k - 1, 0)], widths[k], dim=dim))
            self.attn.append(AttentionBlock(widths[k], dim=dim) if k in attention_levels else nn.Identity())
            self.downs.append(Downsample(widths[k], dim=dim))
        self.final = ResBlock(widths[-1], widths[-1], dim=dim)
        self.final_attn = AttentionBlock(widths[-1], dim=dim) if len(widths) in attention_levels else nn.Identity()
        self.out = nn.Sequential(group_norm(widths[-1]), nn.SiLU(), conv(widths[-1], out_channels, 1))
        self.standardise = standardise

    def forward(self, x):
        h = self.stem(x)
        for block, attn, down in zip(self.blocks, self.attn, self.downs):
            h = down(attn(block(h)))
        z = self.out(self.final_attn(self.final(h)))
        return F.layer_norm(z, z.shape[1:]) if self.standardise else z


class LabelDecoder(nn.Module):
    def __init__(self, latent_channels: int, num_classes: int, widths, *, dim: int):
        super().__init__()
        conv = conv_nd(dim)
        rev = list(reversed(widths))
        self.stem = conv(latent_channels, rev[0], 3, padding=1)
        self.first = ResBlock(rev[0], rev[0], dim=dim)
        self.ups, self.blocks = nn.ModuleList(), nn.ModuleList()
        for k in range(len(rev)):
            self.ups.append(Upsample(rev[k], rev[k], dim=dim))
            self.blocks.append(ResBlock(rev[k], rev[min(k + 1, len(rev) - 1)], dim=dim))
        self.out = nn.Sequential(group_norm(rev[-1]), nn.SiLU(), conv(rev[-1], num_classes, 1))

    def forward(self, z):
        h = self.first(self.stem(z))
        for up, block in zip(self.ups, self.blocks):
            h = block(up(h))
        return self.out(h)


class LatentDenoiser(nn.Module):
    """U-Net over the latent: widths (16, 32, 64), 64-d time embedding, attention at levels 1 and 2."""

    def __init__(self, in_channels: int, out_channels: int, widths=(16, 32, 64), emb_dim: int = 64, *, dim: int):
        super().__init__()
        conv = conv_nd(dim)
        self.time = TimeEmbedding(emb_dim, emb_dim)
        self.stem = conv(in_channels, widths[0], 3, padding=1)
        n = len(widths)
        self.enc, self.enc_attn, self.downs = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for k in range(n):
            self.enc.append(ResBlock(widths[max(k - 1, 0)], widths[k], emb_dim, dim=dim))
            self.enc_attn.append(AttentionBlock(widths[k], dim=dim) if k > 0 else nn.Identity())
            if k < n - 1:
                self.downs.append(Downsample(widths[k], dim=dim))
        self.mid = ResBlock(widths[-1], widths[-1], emb_dim, dim=dim)
        self.ups, self.dec, self.dec_attn = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for k in reversed(range(n - 1)):
            self.ups.append(Upsample(widths[k + 1], widths[k], dim=dim))
            self.dec.append(ResBlock(2 * widths[k], widths[k], emb_dim, dim=dim))
            self.dec_attn.append(AttentionBlock(widths[k], dim=dim) if k > 0 else nn.Identity())
        self.out = nn.Sequential(group_norm(widths[0]), nn.SiLU(), conv(widths[0], out_channels, 3, padding=1))
        self.multiple = 2 ** (n - 1)

    def forward(self, x, t):
        x, size = pad_to(x, self.multiple)
        emb = self.time(t)
        h, skips = self.stem(x), []
        for k, (block, attn) in enumerate(zip(self.enc, self.enc_attn)):
            h = attn(block(h, emb))
            if k < len(self.downs):
                skips.append(h)
                h = self.downs[k](h)
        h = self.mid(h, emb)
        for up, block, attn in zip(self.ups, self.dec, self.dec_attn):
            skip = skips.pop()
            h = attn(block(torch.cat([up(h, size=skip.shape[2:]), skip], dim=1), emb))
        return crop_to(self.out(h), size)


def soft_dice(probs: torch.Tensor, onehot: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Mean over classes of the batch soft Dice 2|P.G| / (|P| + |G|)."""
    axes = [0] + list(range(2, probs.ndim))
    inter = (probs * onehot).sum(axes)
    return ((2 * inter + eps) / (probs.sum(axes) + onehot.sum(axes) + eps)).mean()


class LDSeg(DiffusionSegmenter):
    default_steps = 15
    validation_steps = 5

    def __init__(self, in_channels: int, num_classes: int, dim: int, *, arch: str = "release", patch_size=None,
                 width: int = 16, latent_channels: int = 1, denoiser_widths=(16, 32, 64), emb_dim: int = 64,
                 timesteps: int = 1000, schedule: str = "cosine", decoder_input: str = "z0",
                 latent_clip: float = 5.0, ema: float | None = 0.999, label_input: str = "onehot",
                 attention_residual: str = "input", shared_noise: bool = False):
        super().__init__(num_classes)
        if decoder_input not in DECODER_INPUTS:
            raise ConfigError(f"unknown decoder_input {decoder_input!r}; choose {' or '.join(DECODER_INPUTS)}")
        if arch not in ARCHS:
            raise ConfigError(f"unknown ldseg arch {arch!r}; choose {' or '.join(ARCHS)}")
        if label_input not in LABEL_INPUTS:
            raise ConfigError(f"unknown label_input {label_input!r}; choose {' or '.join(LABEL_INPUTS)}")
        if ema is not None and not 0.0 <= float(ema) < 1.0:
            raise ConfigError(f"ema must be in [0, 1) or None, got {ema!r}")
        self.dim, self.arch, self.label_input = int(dim), arch, label_input
        self.decoder_input, self.latent_clip, self.shared_noise = decoder_input, float(latent_clip), bool(shared_noise)
        self.schedule = NoiseSchedule(schedule, timesteps)
        label_channels = num_classes if label_input == "onehot" else 1
        if arch == "release":
            from salseg.nets.diffusion import ldseg_release as rel

            if patch_size is None:
                raise ConfigError("ldseg (release architecture) needs the patch size (its latent LayerNorm is sized "
                                  "from it): give plans with 'patch_size' or the option patch_size")
            latent = (1,) + tuple(-(-int(p) // FACTOR) for p in patch_size)
            self.latent_channels = 1
            self.label_encoder = rel.LabelEncoder(label_channels, latent, dim)
            self.image_encoder = rel.ImageEncoder(in_channels, dim)
            self.denoiser = rel.Denoiser(dim, residual=attention_residual)
            self.label_decoder = rel.LabelDecoder(num_classes, dim)
        else:
            self.latent_channels = int(latent_channels)
            widths = [int(width) * m for m in (1, 2, 4, 8)]
            self.label_encoder = LatentEncoder(label_channels, self.latent_channels, widths, dim=dim,
                                               standardise=True)
            self.image_encoder = LatentEncoder(in_channels, self.latent_channels, widths, dim=dim,
                                               attention_levels=(3, 4))
            self.denoiser = LatentDenoiser(2 * self.latent_channels, self.latent_channels, tuple(denoiser_widths),
                                           int(emb_dim), dim=dim)
            self.label_decoder = LabelDecoder(self.latent_channels, num_classes, widths, dim=dim)
        self.ema_decay = float(ema) if ema else None
        if self.ema_decay is not None:
            self.denoiser_ema = copy.deepcopy(self.denoiser).requires_grad_(False)
            self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))

    def run_denoiser(self, net: nn.Module, z_t: torch.Tensor, cond: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.arch == "release":
            return net(z_t, cond, t)
        return net(torch.cat([cond, z_t], dim=1), t)

    @property
    def uses_ema(self) -> bool:
        return self.ema_decay is not None

    @torch.no_grad()
    def ema_update(self) -> None:
        """One EMA step of the denoiser (call after each optimiser step; a no-op when ``ema`` is None)."""
        if self.ema_decay is None:
            return
        n = int(self.ema_updates)
        decay = min(self.ema_decay, (1 + n) / (10 + n))
        for p_ema, p in zip(self.denoiser_ema.parameters(), self.denoiser.parameters()):
            p_ema.lerp_(p.detach(), 1 - decay)
        for b_ema, b in zip(self.denoiser_ema.buffers(), self.denoiser.buffers()):
            b_ema.copy_(b)
        self.ema_updates += 1

    def sampling_denoiser(self) -> nn.Module:
        if self.ema_decay is not None and int(self.ema_updates) > 0:
            return self.denoiser_ema
        return self.denoiser

    def training_loss(self, image: torch.Tensor, target: torch.Tensor, *,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        image, size = pad_to(image, FACTOR)
        target = pad_to(target[:, None].clamp_min(0), FACTOR)[0][:, 0].long()
        onehot = one_hot(target, self.num_classes).to(image.dtype)
        z0 = self.label_encoder(onehot if self.label_input == "onehot" else target[:, None].to(image.dtype))
        cond = self.image_encoder(image)
        t = self.schedule.sample_t(z0.shape[0], z0.device, generator)
        shape = (1,) + tuple(z0.shape[1:]) if self.shared_noise else z0.shape  # the release: one noise per batch
        noise = samplers.randn(shape, generator=generator, device=z0.device, dtype=z0.dtype).expand_as(z0)
        z_t = self.schedule.q_sample(z0, t, noise)
        eps_hat = self.run_denoiser(self.denoiser, z_t, cond, t)
        if self.decoder_input == "z0":
            z_hat = self.schedule.predict_x0(z_t, t, eps_hat).clamp(-self.latent_clip, self.latent_clip)
        else:
            z_hat = z_t - eps_hat
        logits = crop_to(self.label_decoder(z_hat), size).float()
        target, onehot = crop_to(target[:, None], size)[:, 0], crop_to(onehot, size).float()
        ce = F.cross_entropy(logits, target)
        dice = soft_dice(logits.softmax(1), onehot)
        return ce + 2 * (1 - dice) + F.mse_loss(eps_hat.float(), noise.float())

    def sample_once(self, image, steps, sampler, generator):
        image, size = pad_to(image, FACTOR)
        cond = self.image_encoder(image)
        denoiser = self.sampling_denoiser()
        z0 = samplers.sample(lambda z, t: self.run_denoiser(denoiser, z, cond, t), cond.shape, self.schedule,
                             sampler=sampler, steps=steps, generator=generator, device=image.device,
                             dtype=image.dtype)
        return crop_to(self.label_decoder(z0).float().softmax(1), size).to(image.dtype)


@register_network("ldseg", dims=(2, 3), kind="diffusion", divisor=FACTOR,
                  recipe={"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "batch_size": 4},
                  description="LDSeg (Zaman et al. 2024): end-to-end latent diffusion segmenter, 2D/3D")
def ldseg(in_channels: int, num_classes: int, dim: int, plans: dict | None, *, arch: str = "release",
          width: int | None = None, timesteps: int = 1000, schedule: str = "cosine", latent_channels: int | None = None,
          denoiser_widths=None, emb_dim: int | None = None, decoder_input: str = "z0", latent_clip: float = 5.0,
          ema: float | None = 0.999, label_input: str = "onehot", attention_residual: str = "input",
          shared_noise: bool = False, patch_size=None, deep_supervision: bool = False, **options) -> LDSeg:
    """LDSeg, 2D or 3D: ``arch="release"`` (the TensorFlow release's four networks, sized from the patch) or
    ``"compact"`` (salseg's earlier design: any size, padded to a multiple of 16; ``width``, ``latent_channels``,
    ``denoiser_widths`` and ``emb_dim`` apply to it only). ``deep_supervision`` is ignored."""
    if dim not in (2, 3):
        raise ConfigError(f"ldseg is 2D/3D only (asked for {dim}D)")
    check_options("ldseg", options)
    compact_only = {k: v for k, v in (("width", width), ("latent_channels", latent_channels),
                                      ("denoiser_widths", denoiser_widths), ("emb_dim", emb_dim)) if v is not None}
    patch = None
    if arch == "release":
        if compact_only:
            raise ConfigError(f"ldseg option(s) {', '.join(compact_only)} apply to arch=compact only (the release "
                              f"architecture has fixed widths); add -o arch=compact or leave them out")
        patch = resolve_patch_size(plans, patch_size, dim, "ldseg")
        if len(patch) != dim:
            raise ConfigError(f"ldseg ({dim}D) needs a {dim}D patch size, got {list(patch)}")
    return LDSeg(in_channels, num_classes, dim, arch=arch, patch_size=patch, width=int(width or 16),
                 latent_channels=int(latent_channels or 1),
                 denoiser_widths=tuple(int(w) for w in (denoiser_widths or (16, 32, 64))),
                 emb_dim=int(emb_dim or 64), timesteps=int(timesteps), schedule=schedule, decoder_input=decoder_input,
                 latent_clip=float(latent_clip), ema=ema, label_input=label_input,
                 attention_residual=attention_residual, shared_noise=bool(shared_noise))
