"""Deep-supervision parity: every slice-module position (and ``stack``) keeps the backbone's low-resolution outputs
in training mode, ``deep_supervision_scales`` says so, eval / volume inference are unchanged, the trainer's loss
takes the outputs, and networks without deep supervision build the same either way."""

import pytest
import torch
import torch.nn.functional as F

from salseg.nets import build
from salseg.nets.capabilities import Capabilities, capabilities_of
from salseg.nets.modules.positions import POSITIONS, neighbour_index, predict_volume_amortized
from salseg.train.losses import DeepSupervisionLoss, DiceCELoss

S, CLASSES, F_WIDTH = 32, 3, 4
UNET = {"width": 4, "patch_size": (S, S)}  # 4 stages (32 -> 4): outputs at 1 and 1/2 (1/4 is left out, as nnU-Net)


def _nparams(m):
    return sum(p.numel() for p in m.parameters())


def _model(module="salstm", position="head", ds=True, **kw):
    torch.manual_seed(0)
    opts = {"features": F_WIDTH} if module not in ("none", "stack") else {}
    return build("unet", module, in_channels=1, num_classes=CLASSES, position=position, deep_supervision=ds,
                 **UNET, **opts, **kw)


@pytest.mark.parametrize("position", POSITIONS)
def test_training_outputs_are_the_backbone_levels_eval_is_one_tensor(position):
    model = _model("lstmsa", position).train()
    assert model.deep_supervision_scales == [[1.0, 1.0], [0.5, 0.5]]
    x = torch.randn(2, 3, 1, S, S)
    out = model(x)
    assert isinstance(out, list) and [tuple(o.shape) for o in out] == [(2, CLASSES, S, S),
                                                                         (2, CLASSES, S // 2, S // 2)]
    with torch.no_grad():
        top = model.eval()(x)
    assert isinstance(top, torch.Tensor) and torch.allclose(top, out[0].detach(), atol=1e-5)
    # without deep supervision: one output in training too
    plain = _model("lstmsa", position, ds=False).train()
    assert len(plain.deep_supervision_scales) == 1 and isinstance(plain(x), torch.Tensor)


def test_head_position_low_resolution_outputs_are_the_backbone_on_the_centre_slice():
    model = _model("salstm", "head").train()
    x = torch.randn(2, 3, 1, S, S)
    out = model(x)
    ref = model.backbone(x[:, 1])  # the backbone alone on the centre slice, training mode: [features, classes@1/2]
    assert ref[0].shape[1] == F_WIDTH and ref[1].shape[1] == CLASSES
    assert torch.allclose(out[1], ref[1], atol=1e-6)


@pytest.mark.parametrize("position", ["bottleneck", "skip", "parallel"])
def test_other_positions_give_the_backbones_own_outputs_of_the_decoded_centre_slice(position):
    model = _model("salstm", position).train()
    with torch.no_grad():  # with the module's contribution zeroed the model is the backbone on the centre slice
        model.fusion.proj_out.weight.zero_()
        model.fusion.proj_out.bias.zero_()
        x = torch.randn(2, 3, 1, S, S)
        out, ref = model(x), model.backbone(x[:, 1])
    assert len(out) == len(ref) == 2 and all(torch.allclose(a, b, atol=1e-6) for a, b in zip(out, ref))


@pytest.mark.parametrize("position", POSITIONS)
def test_deep_supervision_adds_only_the_low_resolution_1x1_heads(position):
    with_ds, without = _model("salstm", position), _model("salstm", position, ds=False)
    features = with_ds.backbone.encoder_channels
    assert _nparams(with_ds) - _nparams(without) == features[1] * CLASSES + CLASSES  # one 1x1 conv, 8 -> 3
    extra = set(with_ds.state_dict()) - set(without.state_dict())
    assert extra == {"backbone.seg_layers.1.weight", "backbone.seg_layers.1.bias"}
    assert set(without.state_dict()) <= set(with_ds.state_dict())


def test_trainer_loss_takes_the_outputs_and_reaches_the_auxiliary_heads():
    model = _model("lstmsa", "head").train()
    x, target = torch.randn(2, 3, 1, S, S), torch.randint(0, CLASSES, (2, 1, S, S))
    out = model(x)
    loss = DeepSupervisionLoss(DiceCELoss())(out, target)
    # independent: weights 1 and 1/2 normalised; the target subsampled by nearest neighbour (every other pixel)
    base = DiceCELoss()
    expect = (2 / 3) * base(out[0], target) + (1 / 3) * base(out[1], target[..., ::2, ::2])
    assert torch.allclose(loss, expect, atol=1e-6)
    loss.backward()
    assert model.backbone.seg_layers[1].weight.grad.abs().sum() > 0


def test_stack_deep_supervision_is_the_backbones():
    model = _model("stack").train()
    x = torch.randn(2, 3, 1, S, S)
    out = model(x)
    ref = model.backbone(x.flatten(1, 2))
    assert model.deep_supervision_scales == model.backbone.deep_supervision_scales == [[1.0, 1.0], [0.5, 0.5]]
    assert len(out) == 2 and all(torch.equal(a, b) for a, b in zip(out, ref))
    assert len(_model("stack", ds=False).deep_supervision_scales) == 1


@pytest.mark.parametrize("module", ["salstm", "stack"])
def test_amortised_volume_inference_unchanged_with_deep_supervision(module):
    model = _model(module, "head").eval()
    vol = torch.randn(1, 4, S, S)
    windows = vol.permute(1, 0, 2, 3)[neighbour_index(4)]
    with torch.no_grad():
        direct = torch.stack([model(windows[i:i + 1])[0] for i in range(4)], 1)
    assert torch.allclose(predict_volume_amortized(model, vol, batch_size=2), direct, atol=1e-5)
    model.train()  # a training-mode model: the amortised path gives the full-resolution level
    with torch.no_grad():
        assert torch.allclose(predict_volume_amortized(model, vol, batch_size=2), direct, atol=1e-5)


# tiny configurations of the networks that have no deep-supervision outputs
NO_DS = [
    ("mtunet", "none", {"width": 8, "heads": 2, "img_size": [32, 32]}, 2, (2, 1, 32, 32)),  # BatchNorm: B > 1
    ("mtunet", "salstm", {"width": 8, "heads": 2, "img_size": [32, 32], "features": 4}, 2, (1, 3, 1, 32, 32)),
    ("mtunet", "stack", {"width": 8, "heads": 2, "img_size": [32, 32]}, 2, (2, 3, 1, 32, 32)),
    ("swinunet", "none", {"width": 12, "heads": [1, 1, 2, 2], "window": 2}, 2, (1, 1, 32, 32)),
    ("swinunet", "lstmsa", {"width": 12, "heads": [1, 1, 2, 2], "window": 2, "features": 4}, 2, (1, 3, 1, 32, 32)),
    ("swinunet", "salstm", {"width": 12, "heads": [1, 1, 2, 2], "window": 2, "features": 4,
                            "position": "bottleneck"}, 2, (1, 3, 1, 32, 32)),
    ("swinunetr", "none", {"width": 6, "heads": [1, 1, 2, 2], "window": 2}, 3, (1, 1, 32, 32, 64)),
    ("medsegdiff", "none", {"width": 4, "timesteps": 10, "patch_size": [16, 16]}, 2, None),
    ("ldseg", "none", {"arch": "compact", "width": 4, "timesteps": 10, "denoiser_widths": [4, 8]}, 2, None),
]


@pytest.mark.parametrize("network, module, opts, dim, shape", NO_DS, ids=[f"{n}-{m}" for n, m, *_ in NO_DS])
def test_networks_without_deep_supervision_build_the_same_either_way(network, module, opts, dim, shape):
    models = []
    for ds in (True, False):
        torch.manual_seed(0)
        models.append(build(network, module, in_channels=1, num_classes=2, dim=dim, deep_supervision=ds, **opts))
    a, b = models
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not capabilities_of(a).deep_supervision
    if shape is not None:  # training mode: one tensor, the same from both
        x = torch.randn(shape)
        torch.manual_seed(1)
        ya = a.train()(x)
        torch.manual_seed(1)
        yb = b.train()(x)
        assert isinstance(ya, torch.Tensor) and torch.allclose(ya, yb)


def test_head_backbone_without_retarget_gets_1x1_adapters(monkeypatch):
    # a backbone with deep-supervision outputs in its head's width and no retarget_deep_supervision
    from torch import nn

    from salseg.nets.modules.slice_model import SliceRecurrentModel

    class TwoLevel(nn.Module):
        capabilities = Capabilities(deep_supervision_scales=((1.0, 1.0), (0.5, 0.5)))

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, F_WIDTH, 3, padding=1)

        def forward(self, x):
            f = self.conv(x)
            return [f, F.avg_pool2d(f, 2)] if self.training else f

    head = build("unet", "salstm", in_channels=1, num_classes=CLASSES, features=F_WIDTH, **UNET).head
    model = SliceRecurrentModel(TwoLevel(), head).train()
    x = torch.randn(2, 3, 1, 8, 8)
    out = model(x)
    low = F.avg_pool2d(model.backbone.conv(x[:, 1]), 2)
    assert torch.allclose(out[1], model.ds_adapters[0](low), atol=1e-6) and out[1].shape == (2, CLASSES, 4, 4)
