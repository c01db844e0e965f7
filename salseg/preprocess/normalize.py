"""Intensity normalisation, one scheme per channel (named in plans.json ``normalization``).

- ``ct``: clip to the dataset's foreground 0.5 / 99.5 percentiles, then z-score with the foreground mean / std
  (``intensity_properties`` of the plans) — nnU-Net's CTNormalization.
- ``zscore``: per image z-score; with ``use_mask`` the mean / std come from the nonzero mask only and voxels
  outside it are set to 0 (nnU-Net's choice when cropping to nonzero shrank the images a lot).
- ``rgb``: natural images: divide by 255 then per-image, per-channel z-score (the /255 only fixes the scale of
  the statistics; the result is the same z-score, kept as its own name so that plans say what the data is).
"""

from __future__ import annotations

import numpy as np

from salseg.errors import ConfigError

SCHEMES = ("ct", "zscore", "rgb")
EPS = 1e-8


def _zscore(x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    if mask is not None and mask.any() and not mask.all():
        vals = x[mask]
        mean, std = float(vals.mean(dtype=np.float64)), float(vals.std(dtype=np.float64))
        out = ((x - mean) / max(std, EPS)).astype(np.float32)
        out[~mask] = 0
        return out
    mean, std = float(x.mean(dtype=np.float64)), float(x.std(dtype=np.float64))
    return ((x - mean) / max(std, EPS)).astype(np.float32)


def normalize_channel(x: np.ndarray, scheme: str, props: dict | None = None,
                      mask: np.ndarray | None = None) -> np.ndarray:
    """Normalise one channel (Z, Y, X). ``props``: the channel's foreground intensity properties (``ct``);
    ``mask``: the nonzero mask when the plans say ``use_mask_for_norm`` (``zscore``)."""
    x = x.astype(np.float32, copy=False)
    if scheme == "ct":
        if not props:
            raise ConfigError("ct normalisation needs intensity_properties (mean, std, percentile_00_5, "
                              "percentile_99_5) in plans.json")
        lo, hi = float(props["percentile_00_5"]), float(props["percentile_99_5"])
        mean, std = float(props["mean"]), float(props["std"])
        return ((np.clip(x, lo, hi) - mean) / max(std, EPS)).astype(np.float32)
    if scheme == "zscore":
        return _zscore(x, mask)
    if scheme == "rgb":
        return _zscore(x / 255.0, None)
    raise ConfigError(f"unknown normalization scheme {scheme!r} (known: {', '.join(SCHEMES)})")


def normalize(data: np.ndarray, schemes: list[str], intensity_properties: dict | None = None,
              use_mask: list[bool] | None = None, mask: np.ndarray | None = None) -> np.ndarray:
    """Normalise a (C, Z, Y, X) image channel by channel (returns a new float32 array)."""
    if len(schemes) != data.shape[0]:
        raise ConfigError(f"plans give {len(schemes)} normalization schemes but the image has "
                          f"{data.shape[0]} channels")
    intensity_properties = intensity_properties or {}
    out = np.empty(data.shape, dtype=np.float32)
    for c, scheme in enumerate(schemes):
        m = mask if (use_mask and use_mask[c]) else None
        out[c] = normalize_channel(data[c], scheme, intensity_properties.get(str(c)), m)
    return out
