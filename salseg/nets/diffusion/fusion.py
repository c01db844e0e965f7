"""Fusing an ensemble of diffusion samples into one prediction (``--fusion mean|staple|official``).

- ``mean``: the mean of the samples' class probabilities (salseg's default).
- ``staple``: Warfield, Zou & Wells 2004 (STAPLE), expectation-maximisation over the samples as raters, per
  foreground class on the one-vs-rest masks of each sample's argmax: the prior is the mean foreground fraction
  over raters, sensitivities and specificities start at 0.99999 and are re-estimated until no value changes by
  more than ``tol``; the fused foreground map is the posterior W (as SimpleITK's ``STAPLEImageFilter``).
- ``official``: the official MedSegDiff code's ``staple()`` — one reweighting pass, not Warfield's STAPLE:
  fused = mean_i(s_i * mean_j(s_j)) over the samples' foreground maps s_i.
Foreground maps become class probabilities by :func:`fg_to_probs`.
"""

from __future__ import annotations

import torch

from salseg.errors import ConfigError

FUSIONS = ("mean", "staple", "official")


def fg_to_probs(fg: torch.Tensor) -> torch.Tensor:
    """Foreground maps p_c in [0, 1] (B, K, ...) -> class probabilities (B, K + 1, ...):
    [prod(1 - p_c), p_1, ..., p_K] normalised to sum 1 (binary: exactly [1 - p, p], so argmax = threshold 0.5)."""
    bg = (1 - fg).prod(dim=1, keepdim=True)
    probs = torch.cat([bg, fg], dim=1)
    return probs / probs.sum(dim=1, keepdim=True).clamp_min(1e-8)


def staple(masks: torch.Tensor, *, tol: float = 1e-7, max_iter: int = 1000,
           init: float = 0.99999) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Binary STAPLE. ``masks`` (N raters, *S) in {0, 1} -> (posterior W (*S), sensitivities (N,), specificities
    (N,)), computed in float64."""
    d = masks.reshape(masks.shape[0], -1).to(torch.float64)
    n = d.shape[0]
    prior = d.mean()
    p = torch.full((n,), init, dtype=torch.float64, device=d.device)
    q = p.clone()
    w = torch.zeros(d.shape[1], dtype=torch.float64, device=d.device)
    for _ in range(int(max_iter)):
        # E-step in log space: a = g prod p^d (1-p)^(1-d), b = (1-g) prod q^(1-d) (1-q)^d
        log_a = torch.log(prior) + (d * torch.log(p)[:, None] + (1 - d) * torch.log1p(-p)[:, None]).sum(0)
        log_b = torch.log1p(-prior) + ((1 - d) * torch.log(q)[:, None] + d * torch.log1p(-q)[:, None]).sum(0)
        w = torch.sigmoid(log_a - log_b)
        sw, sv = w.sum(), (1 - w).sum()
        p_new = (d * w).sum(1) / sw if sw > 0 else p
        q_new = ((1 - d) * (1 - w)).sum(1) / sv if sv > 0 else q
        p_new, q_new = p_new.clamp(1e-12, 1 - 1e-12), q_new.clamp(1e-12, 1 - 1e-12)
        change = max(float((p_new - p).abs().max()), float((q_new - q).abs().max()))
        p, q = p_new, q_new
        if change <= tol:
            break
    return w.reshape(masks.shape[1:]), p, q


def official_reweight(samples: torch.Tensor) -> torch.Tensor:
    """The official code's one-pass fusion: mean_i(s_i * mean_j s_j) over the first axis."""
    mv = samples.mean(0, keepdim=True)
    return (samples * mv).mean(0)


def fuse(samples: torch.Tensor, method: str = "mean") -> torch.Tensor:
    """(N, B, C, *S) per-sample class probabilities -> (B, C, *S) fused class probabilities."""
    if method not in FUSIONS:
        raise ConfigError(f"unknown ensemble fusion {method!r}; choose one of {', '.join(FUSIONS)}")
    if method == "mean" or samples.shape[0] == 1:
        return samples.mean(0)
    if method == "official":
        return fg_to_probs(official_reweight(samples[:, :, 1:]))
    labels = samples.argmax(2)                        # (N, B, *S)
    fg = torch.stack([torch.stack([staple(labels[:, b] == c)[0] for c in range(1, samples.shape[2])])
                      for b in range(samples.shape[1])]).to(samples.dtype)
    return fg_to_probs(fg)
