"""MedSegDiff as its official V1 code builds and trains it (presets ``official-b`` and ``official-pp``).

eps_theta = guided-diffusion U-Net (salseg.nets.diffusion.guided_unet) on concat[image, x_t] with learned range
variance (2 outputs per mask channel: eps and v) + the condition network (salseg.nets.diffusion.highway) on the image
alone, gated by the denoiser's encoder features through FF-Parsers at 4 scales; its bottleneck is added to the
denoiser's deepest encoder output, and its sigmoid output is the calibration map ``cal``.
- Masks in {0, 1} (one channel per foreground class), noise on the mask channels only; x0 estimates clipped to
  [-1, 1] while sampling (``clip_denoised``).
- Loss per sample: MSE(eps) + L_vb (improved DDPM hybrid, salseg.nets.diffusion.variance) + 10 MSE(cal, mask).
- Sampling: ancestral DDPM with the learned variance (T steps by default; fewer = respaced chain), DDIM, or
  DPM-Solver++(2M) with dynamic thresholding (ratio 0.995). The calibration map of the last denoiser call is fused
  with the sample s (per sample): if Dice(s > 0, cal) < 0.65 then clamp(cal + 0.25 s, 0, 1) else
  clamp(0.5 cal + 0.5 s, 0, 1) (``cal_fusion="official"``; ``"none"`` keeps clamp(s, 0, 1)).
"""

from __future__ import annotations

import torch

from salseg.errors import ConfigError
from salseg.nets.diffusion import samplers, variance
from salseg.nets.diffusion.blocks import mask_setup, one_hot
from salseg.nets.diffusion.fusion import fg_to_probs
from salseg.nets.diffusion.guided_unet import GuidedUNet
from salseg.nets.diffusion.highway import ConditionNet
from salseg.nets.diffusion.samplers import DiffusionSegmenter
from salseg.nets.diffusion.schedules import NoiseSchedule

CAL_FUSIONS = ("official", "none")
CAL_WEIGHT = 10.0


def calibration_fusion(sample: torch.Tensor, cal: torch.Tensor) -> torch.Tensor:
    """The official per-sample rule fusing a sample s with the calibration map (both (B, K, ...))."""
    dims = tuple(range(1, sample.ndim))
    pred = (sample > 0).to(sample.dtype)
    dice = 2 * (pred * cal).sum(dims) / (pred + cal).sum(dims).clamp_min(1e-8)
    low = (dice < 0.65).to(sample.dtype).reshape(-1, *([1] * (sample.ndim - 1)))
    return low * (cal + 0.25 * sample).clamp(0, 1) + (1 - low) * (0.5 * cal + 0.5 * sample).clamp(0, 1)


class MedSegDiffOfficial(DiffusionSegmenter):
    default_sampler = "ddpm"    # the official default: ancestral sampling over all T steps
    default_steps = 50          # DPM-Solver / DDIM steps when asked for one of them
    validation_steps = 5

    def __init__(self, in_channels: int, num_classes: int, patch_size, *, width: int, mults, res_blocks: int,
                 attention_resolutions, heads: int, scale_shift: bool, timesteps: int = 1000,
                 schedule: str = "linear", learn_sigma: bool = True, cal_fusion: str = "official"):
        super().__init__(num_classes)
        if cal_fusion not in CAL_FUSIONS:
            raise ConfigError(f"unknown cal_fusion {cal_fusion!r}; choose one of {', '.join(CAL_FUSIONS)}")
        div = max(2 ** (len(mults) - 1), 32)
        patch, self.mask_channels = mask_setup(num_classes, patch_size, div, "medsegdiff (official presets)")
        self.patch_size = patch
        self.learn_sigma, self.cal_fusion = bool(learn_sigma), cal_fusion
        self.schedule = NoiseSchedule(schedule, timesteps)
        # attention resolutions are pixel sizes of the configured patch (official: image_size // resolution)
        rates = [min(patch) // int(r) for r in attention_resolutions]
        k = self.mask_channels
        self.unet = GuidedUNet(in_channels + k, 2 * k if learn_sigma else k, width=width, mults=mults,
                               res_blocks=res_blocks, attention_rates=rates, heads=heads, scale_shift=scale_shift)
        self.highway = ConditionNet(in_channels, k, patch, tap_channels=self.unet.tap_channels,
                                    bottleneck_out=self.unet.bottleneck_channels)
        self.divisor = div

    # ---------------------------------------------------------------------------------------------- network
    def denoise_full(self, x_t: torch.Tensor, image: torch.Tensor, t: torch.Tensor):
        """(eps_hat, v or None, cal) for noisy masks x_t (B, K, H, W) and the image (B, C, H, W)."""
        cal = []

        def condition(taps):
            add, c = self.highway(image, [taps[i] for i in self.unet.taps])
            cal.append(c)
            return add

        out = self.unet(torch.cat([image, x_t], dim=1), t, bottleneck_add=condition)
        k = self.mask_channels
        return out[:, :k], (out[:, k:] if self.learn_sigma else None), cal[0]

    def target_mask(self, target: torch.Tensor) -> torch.Tensor:
        """(B, H, W) class indices -> (B, K, H, W) foreground masks in {0, 1} (the official mask space)."""
        return one_hot(target, self.num_classes)[:, 1:]

    # ---------------------------------------------------------------------------------------------- training
    def training_loss(self, image: torch.Tensor, target: torch.Tensor, *,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        x0 = self.target_mask(target).to(image.dtype)
        t = self.schedule.sample_t(x0.shape[0], x0.device, generator)
        noise = samplers.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = self.schedule.q_sample(x0, t, noise)
        eps, v, cal = self.denoise_full(x_t, image, t)
        if self.learn_sigma:
            loss = variance.hybrid_loss(self.chain(), t, x0.float(), x_t.float(), noise.float(), eps.float(),
                                        v.float())
        else:
            loss = variance.mean_flat((noise.float() - eps.float()) ** 2)
        return (loss + CAL_WEIGHT * variance.mean_flat((x0.float() - cal.float()) ** 2)).mean()

    def chain(self, timesteps=None) -> variance.Chain:
        return variance.Chain(self.schedule.alphas_cumprod_f64, timesteps)

    # ---------------------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def ddpm_learned(self, image, shape, steps, generator):
        """Ancestral sampling with the learned variance over ``steps`` evenly spaced steps (all T by default)."""
        seq = sorted(samplers.ddim_timesteps(self.schedule.timesteps, steps or self.schedule.timesteps))
        chain = self.chain(seq)
        x = samplers.randn(shape, generator=generator, device=image.device, dtype=image.dtype)
        cal = None
        for pos in reversed(range(len(seq))):
            t = torch.full((shape[0],), seq[pos], device=image.device, dtype=torch.long)
            index = torch.full_like(t, pos)
            eps, v, cal = self.denoise_full(x, image, t)
            mean, logvar, _ = variance.model_mean_logvar(chain, index, x.float(), eps.float(), v.float(), clip=1.0)
            if pos > 0:
                noise = samplers.randn(shape, generator=generator, device=image.device, dtype=torch.float32)
                mean = mean + torch.exp(0.5 * logvar) * noise
            x = mean.to(image.dtype)
        return x, cal

    @torch.no_grad()
    def sample_once(self, image, steps, sampler, generator):
        b, _, h, w = image.shape
        shape = (b, self.mask_channels, h, w)
        if sampler == "ddpm" and self.learn_sigma:
            x0, cal = self.ddpm_learned(image, shape, steps, generator)
        else:
            last = {}

            def eps_fn(x, t):
                eps, _, last["cal"] = self.denoise_full(x, image, t)
                return eps

            fix = samplers.dynamic_threshold if sampler == "dpm-solver" else None
            if sampler == "dpm-solver":
                x = samplers.randn(shape, generator=generator, device=image.device, dtype=image.dtype)
                x0 = samplers.dpm_solver_pp(eps_fn, x, self.schedule, steps, correct_x0=fix)
            else:
                x0 = samplers.sample(eps_fn, shape, self.schedule, sampler=sampler, steps=steps,
                                     generator=generator, device=image.device, dtype=image.dtype, clip=1.0)
            cal = last["cal"]
        fused = calibration_fusion(x0, cal) if self.cal_fusion == "official" else x0.clamp(0, 1)
        return fg_to_probs(fused)

