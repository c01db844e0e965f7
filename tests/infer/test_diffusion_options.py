"""salseg.infer.options: predict's diffusion-option rules (defaults, refusals) without a trained model."""

import pytest

from salseg.errors import ConfigError
from salseg.infer.options import diffusion_options
from salseg.infer.predictor import DiffusionOptions


def test_defaults_for_a_diffusion_network():
    assert diffusion_options("ldseg", True) == DiffusionOptions(steps=None, sampler=None, ensemble=1, seed=0,
                                                                uncertainty=False, fusion="mean")
    got = diffusion_options("ldseg", True, sampler="ddim", steps=5, ensemble=3, seed=7, fusion="staple",
                            uncertainty=True)
    assert (got.sampler, got.steps, got.ensemble, got.seed, got.fusion, got.uncertainty) == \
        ("ddim", 5, 3, 7, "staple", True)


def test_no_options_for_other_networks():
    assert diffusion_options("unet", False) is None
    with pytest.raises(ConfigError, match=r"--steps, --seed only apply to diffusion networks; unet is not one"):
        diffusion_options("unet", False, steps=3, seed=0)  # seed 0 is given too: named
    with pytest.raises(ConfigError, match="--save-uncertainty only apply"):
        diffusion_options("unet", False, uncertainty=True)


def test_uncertainty_needs_an_ensemble():
    with pytest.raises(ConfigError, match="--ensemble 2 or more"):
        diffusion_options("ldseg", True, uncertainty=True)
    assert diffusion_options("ldseg", True, uncertainty=True, ensemble=2).uncertainty
