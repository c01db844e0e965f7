"""``predict``'s diffusion-sampling options: which networks they apply to, their defaults, and the combinations
that are refused (each with one line naming the option)."""

from __future__ import annotations

from salseg.errors import ConfigError
from salseg.infer.predictor import DiffusionOptions


def diffusion_options(network: str, is_diffusion: bool, *, sampler: str | None = None, steps: int | None = None,
                      ensemble: int | None = None, seed: int | None = None, fusion: str | None = None,
                      uncertainty: bool = False) -> DiffusionOptions | None:
    """The sampling options for a diffusion network (defaults: the network's sampler, one sample, seed 0, mean
    fusion); None for any other network, which refuses every option given."""
    values = {"--sampler": sampler, "--steps": steps, "--ensemble": ensemble, "--seed": seed, "--fusion": fusion,
              "--save-uncertainty": uncertainty or None}
    given = [name for name, value in values.items() if value is not None]
    if not is_diffusion:
        if given:
            raise ConfigError(f"{', '.join(given)} only apply to diffusion networks; {network} is not one")
        return None
    options = DiffusionOptions(steps=steps, sampler=sampler, ensemble=1 if ensemble is None else ensemble,
                               seed=0 if seed is None else seed, uncertainty=uncertainty, fusion=fusion or "mean")
    if uncertainty and options.ensemble < 2:
        raise ConfigError("--save-uncertainty needs --ensemble 2 or more (the spread over samples)")
    return options
