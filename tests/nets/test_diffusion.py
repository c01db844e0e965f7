"""MedSegDiff and LDSeg: shapes, FF-Parser, training step, sampling interface, memory, registry entries."""

import gc
import warnings

import numpy as np
import pytest
import torch

from salseg.errors import ConfigError, SalsegError
from salseg.nets import build, check_pair, get_network
from salseg.nets.capabilities import capabilities_of
from salseg.nets.diffusion.fusion import fg_to_probs
from salseg.nets.diffusion.medsegdiff import FFParser


def tiny_msd(num_classes=2, patch=(32, 48), **kw):
    torch.manual_seed(0)
    return build("medsegdiff", in_channels=3, num_classes=num_classes, dim=2, plans={"patch_size": list(patch)},
                 width=4, **kw)


def tiny_ldseg(dim=2, num_classes=3, **kw):
    torch.manual_seed(0)
    return build("ldseg", in_channels=1, num_classes=num_classes, dim=dim, arch="compact", width=4,
                 denoiser_widths=(8, 8, 16), emb_dim=16, **kw)


def test_registry_entries_and_invalid_uses():
    msd, lds = get_network("medsegdiff"), get_network("ldseg")
    assert (msd.kind, msd.dims, msd.divisor) == ("diffusion", (2,), 8)
    assert (lds.kind, lds.dims, lds.divisor) == ("diffusion", (2, 3), 16)
    assert lds.recipe["optimizer"] == "adam" and lds.recipe["lr"] == 1e-3 and lds.recipe["batch_size"] == 4
    with pytest.raises(SalsegError, match="2D only"):
        check_pair("medsegdiff", "none", 3)
    with pytest.raises(ConfigError, match="does not know option.*medsegdiff takes: .*mults"):
        tiny_msd(stesp=3)
    with pytest.raises(ConfigError, match="divisible by 8"):
        tiny_msd(patch=(30, 32))
    with pytest.raises(ConfigError, match="patch size"):
        build("medsegdiff", in_channels=1, num_classes=2, dim=2)
    with pytest.raises(ConfigError, match="decoder_input"):
        tiny_ldseg(decoder_input="x")


def test_ff_parser_weight_is_parameter_in_rfft2_layout():
    model = tiny_msd(patch=(32, 48))
    params = {id(p) for p in model.parameters()}
    shapes = []
    for k, ff in enumerate(model.ff_parsers):
        assert isinstance(ff.weight, torch.nn.Parameter) and id(ff.weight) in params   # before any forward
        c = 4 * (1, 2, 4, 8)[k]
        h, w = 32 // 2 ** k, 48 // 2 ** k
        assert tuple(ff.weight.shape) == (c, h, w // 2 + 1, 2)
        shapes.append(torch.fft.rfft2(torch.zeros(1, c, h, w)).shape[1:])
        assert tuple(ff.weight.shape[:3]) == tuple(shapes[-1])


def test_ff_parser_against_numpy_fft():
    torch.manual_seed(1)
    ff = FFParser(2, (8, 6))
    x = torch.randn(1, 2, 8, 6)
    torch.testing.assert_close(ff(x), x, atol=1e-5, rtol=0)          # 1 + 0j initialisation = identity
    with torch.no_grad():
        ff.weight.normal_()
    w = ff.weight.detach().numpy()
    ref = np.fft.irfft2(np.fft.rfft2(x.numpy(), norm="ortho") * (w[..., 0] + 1j * w[..., 1]), s=(8, 6), norm="ortho")
    np.testing.assert_allclose(ff(x).detach().numpy(), ref, atol=1e-5)
    assert ff(torch.randn(1, 2, 16, 10)).shape == (1, 2, 16, 10)     # other sizes: resampled map


def test_fg_to_probs():
    p = torch.rand(2, 1, 3, 3)
    torch.testing.assert_close(fg_to_probs(p), torch.cat([1 - p, p], 1))
    q = fg_to_probs(torch.rand(2, 3, 4, 4))
    torch.testing.assert_close(q.sum(1), torch.ones(2, 4, 4))


@pytest.mark.parametrize("num_classes", [2, 3])
def test_medsegdiff_shapes(num_classes):
    model = tiny_msd(num_classes)
    x = torch.randn(2, 3, 32, 48)
    assert model.mask_channels == num_classes - 1
    assert model.denoise(torch.randn(2, num_classes - 1, 32, 48), x, torch.tensor([0, 999])).shape == \
        (2, num_classes - 1, 32, 48)
    target = torch.randint(0, num_classes, (2, 32, 48))
    mask = model.target_mask(target)
    assert set(mask.unique().tolist()) <= {-1.0, 1.0}
    torch.testing.assert_close(mask[:, 0], (target == 1).float() * 2 - 1)
    model.eval()
    probs = model.sample(x, steps=2)
    assert probs.shape == (2, num_classes, 32, 48)


@pytest.mark.parametrize("dim,shape", [(2, (32, 48)), (3, (16, 32, 16))])
def test_ldseg_latents(dim, shape):
    model = tiny_ldseg(dim)
    onehot = torch.nn.functional.one_hot(torch.randint(0, 3, (2, *shape)), 3).movedim(-1, 1).float()
    z = model.label_encoder(onehot)
    assert z.shape == (2, 1, *(s // 16 for s in shape))
    axes = tuple(range(1, z.ndim))                                       # LayerNorm-standardised per sample
    torch.testing.assert_close(z.mean(dim=axes), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.var(dim=axes, unbiased=False), torch.ones(2), atol=1e-2, rtol=0)
    assert model.image_encoder(torch.randn(2, 1, *shape)).shape == z.shape
    assert model.label_decoder(z).shape == (2, 3, *shape)


@pytest.mark.parametrize("dim,shape", [(2, (40, 36)), (3, (16, 32, 16))])
def test_ldseg_sample_shapes(dim, shape):
    model = tiny_ldseg(dim).eval()
    probs = model.sample(torch.randn(2, 1, *shape), steps=2)             # 40 x 36: padded to 48 x 48 inside
    assert probs.shape == (2, 3, *shape)
    torch.testing.assert_close(probs.sum(1), torch.ones(2, *shape))


def _loss_decreases(model, image, target, iters, lr):
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for _ in range(iters):
        loss = model.training_loss(image, target, generator=torch.Generator().manual_seed(7))   # fixed t, noise
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if capabilities_of(model).ema:
            model.ema_update()
    with torch.no_grad():
        final = float(model.training_loss(image, target, generator=torch.Generator().manual_seed(7)))
    assert np.isfinite(losses).all()
    assert final < 0.9 * losses[0], (losses, final)


def test_medsegdiff_training_lowers_loss():
    torch.manual_seed(0)
    image, target = torch.randn(2, 3, 16, 16), (torch.rand(2, 16, 16) > 0.5).long()
    _loss_decreases(tiny_msd(patch=(16, 16)), image, target, 8, 3e-3)


@pytest.mark.parametrize("decoder_input", ["z0", "release"])
def test_ldseg_training_lowers_loss(decoder_input):
    torch.manual_seed(0)
    image, target = torch.randn(2, 1, 32, 32), torch.randint(0, 3, (2, 32, 32))
    model = tiny_ldseg(decoder_input=decoder_input)
    _loss_decreases(model, image, target, 8, 3e-3)
    assert int(model.ema_updates) == 8 and model.sampling_denoiser() is model.denoiser_ema
    diff = [float((a - b).detach().abs().max()) for a, b in zip(model.denoiser_ema.parameters(), model.denoiser.parameters())]
    assert max(diff) > 0


def test_ensemble_probabilities_samples_and_forward():
    model = tiny_msd(3, patch=(16, 16)).eval()
    x = torch.randn(2, 3, 16, 16)
    mean, samples = model.sample(x, steps=2, ensemble=3, return_samples=True,
                                 generator=torch.Generator().manual_seed(0))
    assert samples.shape == (3, 2, 3, 16, 16) and samples.var(0).shape == (2, 3, 16, 16)
    assert float(mean.min()) >= 0 and float(mean.max()) <= 1
    torch.testing.assert_close(mean.sum(1), torch.ones(2, 16, 16))
    torch.testing.assert_close(mean, samples.mean(0))
    assert samples.var(0).max() > 0                                   # the samples differ
    torch.manual_seed(5)
    a = model(x)
    torch.manual_seed(5)
    b = model.sample(x)
    torch.testing.assert_close(a, b)
    assert model.outputs_probabilities and capabilities_of(model).diffusion and model.default_steps == 50
    assert tiny_ldseg().default_steps == 15


def test_per_sample_noise_for_identical_images():
    model = tiny_ldseg().eval()
    x = torch.randn(1, 1, 16, 16).expand(2, -1, -1, -1)
    probs = model.sample(x, steps=2, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(probs[0], probs[1])


def test_memory_does_not_grow_across_samples():
    """Live tensors at the start of each ensemble member's first denoiser call stay the same."""
    model = tiny_ldseg().eval()
    counts = []
    steps = 2

    def hook(module, args):
        if hook.calls % steps == 0:
            gc.collect()
            with warnings.catch_warnings():      # scanning every object touches deprecated torch attributes
                warnings.simplefilter("ignore")
                counts.append(sum(1 for o in gc.get_objects() if torch.is_tensor(o)))
        hook.calls += 1

    hook.calls = 0
    handle = model.denoiser.register_forward_pre_hook(hook)
    try:
        model.sample(torch.randn(1, 1, 16, 16), steps=steps, ensemble=5)
    finally:
        handle.remove()
    assert len(counts) == 5 and len(set(counts[1:])) == 1, counts
    assert torch.is_grad_enabled()
