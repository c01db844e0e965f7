"""Noise schedules and samplers of the diffusion segmenters, against direct formulas."""

import math

import numpy as np
import pytest
import torch

from salseg.errors import ConfigError
from salseg.nets.diffusion import samplers
from salseg.nets.diffusion.schedules import NoiseSchedule, make_betas


def test_linear_schedule_values():
    s = NoiseSchedule("linear", 1000)
    betas = s.betas.double().numpy()
    assert betas.shape == (1000,)
    assert betas[0] == pytest.approx(1e-4, rel=1e-6) and betas[-1] == pytest.approx(0.02, rel=1e-6)
    assert np.allclose(np.diff(betas), (0.02 - 1e-4) / 999, rtol=1e-4)
    assert np.allclose(s.alphas_cumprod.numpy(), np.cumprod(1 - np.linspace(1e-4, 0.02, 1000)), rtol=1e-5)
    assert np.allclose(s.sqrt_one_minus_alphas_cumprod.numpy() ** 2 + s.sqrt_alphas_cumprod.numpy() ** 2, 1, atol=1e-6)


def test_cosine_schedule_matches_closed_form():
    T, s_ = 1000, 0.008
    sched = NoiseSchedule("cosine", T)
    f = lambda t: math.cos((t / T + s_) / (1 + s_) * math.pi / 2) ** 2  # noqa: E731
    closed = np.array([f(t + 1) / f(0) for t in range(T)])
    unclipped = make_betas("cosine", T) < 0.999
    assert unclipped[:990].all()
    np.testing.assert_allclose(sched.alphas_cumprod_f64[unclipped], closed[unclipped], rtol=1e-9, atol=1e-12)
    assert make_betas("cosine", T).max() <= 0.999


def test_bad_schedule_and_steps():
    with pytest.raises(ConfigError, match="unknown noise schedule"):
        NoiseSchedule("quadratic", 10)
    with pytest.raises(ConfigError, match="between 1 and 10"):
        samplers.ddim_timesteps(10, 11)
    with pytest.raises(ConfigError, match="unknown sampler"):
        samplers.sample(lambda x, t: x, (1, 1), NoiseSchedule("linear", 10), sampler="euler", steps=2)


@pytest.mark.parametrize("steps", [1, 3, 15, 50])
def test_ddim_calls_denoiser_exactly_s_times(steps):
    sched = NoiseSchedule("linear", 1000)
    seen = []

    def denoise(x, t):
        seen.append(int(t[0]))
        return torch.zeros_like(x)

    samplers.sample(denoise, (2, 1, 4, 4), sched, sampler="ddim", steps=steps)
    assert len(seen) == steps
    assert seen == sorted(set(seen), reverse=True) and seen[0] == 999
    if steps > 1:
        assert seen[-1] == 0


def test_ddim_recovers_point_with_exact_denoiser():
    """With the exact eps of a single data point x0*, deterministic DDIM lands on x0*."""
    sched = NoiseSchedule("cosine", 1000)
    x_star = torch.linspace(-1, 1, 16).reshape(1, 1, 4, 4)
    abar = torch.tensor(sched.alphas_cumprod_f64, dtype=torch.float64)

    def denoise(x, t):
        a = abar[t].reshape(-1, 1, 1, 1)
        return ((x.double() - a.sqrt() * x_star) / (1 - a).sqrt()).float()

    out = samplers.sample(denoise, (3, 1, 4, 4), sched, sampler="ddim", steps=10)
    torch.testing.assert_close(out, x_star.expand(3, -1, -1, -1), atol=1e-4, rtol=0)


def test_ddpm_equals_direct_ancestral_sampling():
    """The shared loop with eta=1 on all T steps == DDPM's posterior mean + sqrt(beta~_t) z (Ho et al. eq. 6-7)."""
    T = 20
    sched = NoiseSchedule("linear", T)
    denoise = lambda x, t: 0.3 * x + 0.01 * t.float().reshape(-1, 1, 1)  # noqa: E731
    calls = []
    out = samplers.sample(lambda x, t: (calls.append(1), denoise(x, t))[1], (2, 3, 5), sched, sampler="ddpm",
                          generator=torch.Generator().manual_seed(3))
    assert len(calls) == T
    betas = make_betas("linear", T)
    abar = np.cumprod(1 - betas)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 5, generator=g).double()
    for t in reversed(range(T)):
        eps = denoise(x.float(), torch.full((2,), t)).double()
        a_prev = abar[t - 1] if t > 0 else 1.0
        x0 = (x - math.sqrt(1 - abar[t]) * eps) / math.sqrt(abar[t])
        mean = (betas[t] * math.sqrt(a_prev) / (1 - abar[t])) * x0 \
            + ((1 - a_prev) * math.sqrt(1 - betas[t]) / (1 - abar[t])) * x
        x = mean
        if t > 0:
            var = betas[t] * (1 - a_prev) / (1 - abar[t])
            x = mean + math.sqrt(var) * torch.randn(2, 3, 5, generator=g).double()
    torch.testing.assert_close(out.double(), x, atol=1e-4, rtol=1e-4)


def test_noise_is_per_sample_and_seeded():
    sched = NoiseSchedule("linear", 100)
    f = lambda x, t: torch.zeros_like(x)  # noqa: E731
    a = samplers.sample(f, (3, 1, 6, 6), sched, steps=5, generator=torch.Generator().manual_seed(1))
    b = samplers.sample(f, (3, 1, 6, 6), sched, steps=5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a[0], a[1]) and not torch.allclose(a[1], a[2])
