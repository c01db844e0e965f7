"""Declared capabilities (salseg.nets.capabilities): what a built model states agrees with what it does, for every
module and every position on a tiny unet and for the diffusion networks; an undeclared model is a plain segmenter."""

import pytest
import torch
from torch import nn

from salseg.nets import build, get_module, valid_modules
from salseg.nets.capabilities import PLAIN, POSITIONS, Capabilities, capabilities_of

S = 32
UNET = {"width": 2, "patch_size": (S, S)}


def _pairs():
    """Every module at the head; one slice module (SA-LSTM) at every position."""
    yield from ((module, "head") for module in valid_modules("unet", 2))
    yield from (("salstm", position) for position in POSITIONS if position != "head")


@pytest.mark.parametrize("module, position", list(_pairs()))
def test_unet_pairs_declare_what_they_do(module, position):
    opts = {"features": 2} if get_module(module).kind == "slice" else {}
    torch.manual_seed(0)
    model = build("unet", module, in_channels=1, num_classes=3, position=position, **UNET, **opts)
    caps = capabilities_of(model)
    assert not caps.diffusion and caps.divisor == tuple(model.backbone.divisor if caps.is_slice_model
                                                        else model.divisor)
    assert caps.is_slice_model == (module != "none")
    assert caps.position == (position if caps.is_slice_model else None)
    assert caps.slice_cache == caps.is_slice_model
    x = torch.randn(caps.input_shape(1, (S, S), batch=2))
    out = model.train()(x)  # deep supervision: one output per declared scale, each at its scale
    outs = out if isinstance(out, list) else [out]
    assert caps.deep_supervision == (len(outs) > 1) and len(outs) == len(caps.scales())
    for o, scale in zip(outs, caps.scales()):
        assert list(o.shape[-2:]) == [int(S * s) for s in scale]
    if caps.slice_cache:  # the per-slice cache gives the centre logits of a window
        model.eval()
        with torch.no_grad():
            index = torch.arange(caps.slice_k)[None]
            cached = model.decode_from_cache(model.encode_slices(x[0]), index)
            assert torch.allclose(cached, model(x[:1]), atol=1e-5)


def test_diffusion_declares_sampling_and_ema():
    msd = build("medsegdiff", in_channels=1, num_classes=2, width=8, patch_size=(S, S))
    caps = capabilities_of(msd)
    assert caps.diffusion and not caps.ema and caps.validation_steps == msd.validation_steps == 5
    assert not caps.is_slice_model and not caps.deep_supervision
    lds = build("ldseg", in_channels=1, num_classes=2, patch_size=(S, S))
    assert capabilities_of(lds).diffusion and capabilities_of(lds).ema
    assert not capabilities_of(build("ldseg", in_channels=1, num_classes=2, patch_size=(S, S), ema=None)).ema


def test_undeclared_model_is_a_plain_segmenter():
    caps = capabilities_of(nn.Conv2d(1, 2, 1))
    assert caps == PLAIN == Capabilities()
    assert not (caps.is_slice_model or caps.diffusion or caps.deep_supervision or caps.slice_cache)
    assert caps.divisor is None and caps.scales(3) == [[1.0, 1.0, 1.0]]
    assert caps.input_shape(2, (8, 8)) == (1, 2, 8, 8)
    assert Capabilities(slice_k=5).input_shape(2, (8, 8), batch=3) == (3, 5, 2, 8, 8)
