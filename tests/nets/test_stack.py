"""``stack``, the context baseline: K neighbouring slices as K*C input channels of the unchanged 2D backbone.
Forward against the backbone on the channel-stacked input (same weights), parameters by formula, the option ``k``,
which networks it is valid for, volume inference with clamped edges against a hand-made window-by-window
prediction, and its efficiency record."""

import numpy as np
import pytest
import torch
from torch import nn

from salseg.bench.efficiency import measure_efficiency
from salseg.errors import ConfigError, SalsegError
from salseg.infer.predictor import predict_preprocessed
from salseg.nets import build, get_module, invalid_reason, valid_modules
from salseg.nets.capabilities import Capabilities, capabilities_of
from salseg.nets.modules.positions import predict_volume_amortized

S = 32


def _nparams(m):
    return sum(p.numel() for p in m.parameters())


def _stack(in_channels=2, classes=3, **kw):
    torch.manual_seed(0)
    return build("unet", "stack", in_channels=in_channels, num_classes=classes, width=4, patch_size=(S, S), **kw)


def test_forward_is_the_unchanged_backbone_on_the_channel_stacked_slices():
    model = _stack().eval()
    assert capabilities_of(model).is_slice_model and model.k == 3 and get_module("stack").kind == "stack"
    # an independently built plain unet with 3 * 2 input channels, given the same weights
    ref = build("unet", in_channels=6, num_classes=3, width=4, patch_size=(S, S)).eval()
    ref.load_state_dict({k[len("backbone."):]: v for k, v in model.state_dict().items()})
    x = torch.randn(2, 3, 2, S, S)
    stacked = torch.cat([x[:, 0], x[:, 1], x[:, 2]], dim=1)  # slice k's channel c is input channel k*C + c
    with torch.no_grad():
        assert torch.equal(model(x), ref(stacked))
        x2 = x.clone()
        x2[:, 0, 1] += 1.0  # the previous slice's second channel reaches the output
        assert not torch.equal(model(x2), model(x))
    with pytest.raises(SalsegError, match=r"K=3, C=2"):
        model(torch.randn(2, 3, 1, S, S))
    with pytest.raises(SalsegError, match=r"K=3, C=2"):
        model(torch.randn(2, 6, S, S))


def test_parameters_differ_from_none_by_the_first_convolutions_extra_inputs():
    none = build("unet", in_channels=2, num_classes=3, width=4, patch_size=(S, S))
    width, kernel = 4, 3 * 3
    assert _nparams(_stack()) - _nparams(none) == (3 - 1) * 2 * width * kernel
    assert _nparams(_stack(k=5)) - _nparams(none) == (5 - 1) * 2 * width * kernel


def test_option_k_and_bad_values():
    model = _stack(in_channels=1, k=5)
    assert model.k == 5 and _nparams(model) == _nparams(build("unet", in_channels=5, num_classes=3, width=4,
                                                               patch_size=(S, S)))
    for bad in (2, 0, -1, "3", 1.5, True):
        with pytest.raises(ConfigError, match="stack option k=.*odd integer"):
            _stack(k=bad)
    with pytest.raises(SalsegError, match="slice modules only"):
        _stack(position="bottleneck")


def test_valid_for_every_2d_segmentation_network_and_says_why_not_elsewhere():
    for network in ("unet", "mtunet", "swinunet"):
        assert "stack" in valid_modules(network, 2) and invalid_reason(network, "stack", 2) is None
    for network, dim, why in (("unet", 3, "does not apply in 3D"), ("medsegdiff", 2, "diffusion model"),
                              ("ldseg", 2, "diffusion model"), ("ldseg", 3, "diffusion model"),
                              ("swinunetr", 3, "does not apply in 3D")):
        reason = invalid_reason(network, "stack", dim)
        assert reason and "K neighbouring 2D slices" in reason and "2D segmentation network" in reason, reason
        assert why in reason, reason
        with pytest.raises(SalsegError, match=f"invalid pair {network} \\+ stack"):
            build(network, "stack", in_channels=1, num_classes=2, dim=dim)
    assert "2D only" in invalid_reason("mtunet", "stack", 3)


@pytest.mark.parametrize("network, opts", [("mtunet", {"width": 8, "heads": 2, "img_size": [32, 32]}),
                                           ("swinunet", {"width": 12, "heads": [1, 1, 2, 2], "window": 2})])
def test_attention_backbones_take_the_stacked_channels(network, opts):
    torch.manual_seed(0)
    model = build(network, "stack", in_channels=1, num_classes=2, **opts).eval()
    assert not model.backbone.repeat_gray  # 3 channels: no gray-to-RGB repeat
    with torch.no_grad():
        assert model(torch.randn(2, 3, 1, 32, 32)).shape == (2, 2, 32, 32)


def _clamped_reference(model, vol):
    """Window-by-window, the neighbours clamped by hand (not with neighbour_index): (classes, Z, H, W)."""
    z = vol.shape[1]
    outs = []
    with torch.no_grad():
        for i in range(z):
            idx = [max(i - 1, 0), i, min(i + 1, z - 1)]
            outs.append(model.backbone(torch.cat([vol[:, j] for j in idx], 0)[None])[0])
    return torch.stack(outs, 1)


def test_volume_prediction_clamps_edges_like_window_by_window():
    model = _stack().eval()
    vol = torch.randn(2, 5, S, S)
    ref = _clamped_reference(model, vol)
    assert torch.allclose(predict_volume_amortized(model, vol, batch_size=2), ref, atol=1e-5)
    assert torch.allclose(predict_volume_amortized(model, vol, batch_size=3, chunk=2), ref, atol=1e-5)
    one = torch.randn(2, 1, S, S)  # a single slice: all three neighbours are itself
    assert torch.allclose(predict_volume_amortized(model, one), _clamped_reference(model, one), atol=1e-5)


def test_predictor_fast_path_equals_the_generic_window_path():
    model = _stack(in_channels=1, classes=2).eval()

    class WindowByWindow(nn.Module):  # the same model without encode_slices: the predictor's stacked-view path
        capabilities = Capabilities(slice_k=3)

        def forward(self, x):
            return model(x)

    data = np.random.default_rng(0).normal(size=(1, 4, 24, 40)).astype(np.float32)
    cfg = {"dim": 2, "patch_size": [16, 16], "batch_size": 2}
    fast = predict_preprocessed(model, data, cfg, num_classes=2, mirroring=True)
    slow = predict_preprocessed(WindowByWindow(), data, cfg, num_classes=2, mirroring=True)
    np.testing.assert_allclose(fast, slow, atol=1e-5)
    # no tiling, no mirroring: the probabilities are the softmax of the hand-clamped reference
    whole = predict_preprocessed(model, data[:, :, :16, :16], {"dim": 2, "patch_size": [16, 16], "batch_size": 2},
                                 num_classes=2, mirroring=False)
    ref = torch.softmax(_clamped_reference(model, torch.from_numpy(data[:, :, :16, :16])), 0).numpy()
    np.testing.assert_allclose(whole, ref, atol=1e-5)


def test_efficiency_record_of_stack():
    recs = measure_efficiency("unet", ["none", "stack", "salstm"], num_classes=2, sizes=[S], repeats=1, warmup=0,
                              num_threads=1, options={"width": 4, "features": 4})  # features: salstm only
    by = {r["module"]: r for r in recs}
    stack, none = by["stack"], by["none"]
    assert stack["skipped"] is None and stack["position"] is None and stack["input_shape"] == [1, 3, 1, S, S]
    assert stack["params"] - none["params"] == 2 * 4 * 9  # two more input channels of the first 3x3 conv
    # no per-slice work: the amortised cost of one slice is one backbone pass on the stacked window
    assert stack["flops_amortized"] == stack["flops"] > none["flops"]
    assert stack["flops"] - none["flops"] == 2 * (2 * 4 * 9) * S * S  # the extra MACs of that conv, x2
