"""Registry: invalid pairs are refused with the reason and the valid choices; a user's network (decorator or entry
point, no edit of salseg) composes with the slice-recurrent modules."""

import sys

import pytest
import torch
from torch import nn

from salseg.errors import SalsegError
from salseg.nets import build, get_network, registry
from salseg.nets.capabilities import capabilities_of

TOY_NET = '''
from torch import nn
from salseg.nets import register_network

@register_network("{name}", dims=(2,))
def toy(in_channels, num_classes, dim, plans, *, deep_supervision=True, **_):
    """a user's two-conv network"""
    return nn.Sequential(nn.Conv2d(in_channels, 5, 3, padding=1), nn.ReLU(), nn.Conv2d(5, num_classes, 1))
'''


@pytest.fixture
def fresh_registry(monkeypatch):
    """Work on copies of the registry tables so nothing registered here leaks into other tests."""
    registry.networks()  # load built-ins first
    monkeypatch.setattr(registry, "_networks", dict(registry._networks))
    monkeypatch.setattr(registry, "_modules", dict(registry._modules))
    return registry


def _check_user_net(name):
    torch.manual_seed(0)
    model = build(name, "salstm", in_channels=1, num_classes=4, features=8)
    assert capabilities_of(model).is_slice_model and model.k == 3
    head_params = sum(p.numel() for p in model.head.parameters())
    assert head_params == 2 * (16 * 32 * 25 + 32) + 16 * 4 + 4
    assert model(torch.randn(2, 3, 1, 12, 12)).shape == (2, 4, 12, 12)
    # the backbone's head became a 1x1 conv to 8 feature channels
    assert model.backbone[-1].out_channels == 8


def test_user_network_by_decorator(fresh_registry):
    exec(TOY_NET.format(name="toy-deco"), {})
    assert "toy-deco" in registry.networks()
    _check_user_net("toy-deco")


def test_user_network_by_entry_point(fresh_registry, tmp_path, monkeypatch):
    (tmp_path / "toy_salseg_plugin.py").write_text(TOY_NET.format(name="toy-ep"))
    dist = tmp_path / "toy_salseg_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-salseg-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[salseg.networks]\ntoy-ep = toy_salseg_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "toy_salseg_plugin", raising=False)
    monkeypatch.setattr(registry, "_loaded", False)
    assert "toy-ep" in registry.networks()
    _check_user_net("toy-ep")
    sys.modules.pop("toy_salseg_plugin", None)


def test_invalid_pairs_say_why_and_list_valid_choices(fresh_registry):
    with pytest.raises(SalsegError, match=r"needs a 2D backbone.*Valid modules for unet in 3D: none"):
        build("unet", "salstm", in_channels=1, num_classes=2, dim=3)
    # an attention-replacing module (RecA's kind) cannot attach to a network without self-attention
    name = "reca" if "reca" in registry.modules() else "toy-attention"
    if name == "toy-attention":
        registry.register_module(name, kind="attention", options=("strategy",))(lambda **kw: None)
    with pytest.raises(SalsegError) as err:
        build("unet", name, in_channels=1, num_classes=2, dim=2)
    msg = str(err.value)
    assert "has no self-attention" in msg and "Valid modules for unet in 2D:" in msg
    valid = [v.strip() for v in msg.split("Valid modules for unet in 2D:")[1].split(",")]
    assert {"none", "salstm", "lstmsa", "sa+lstm"} <= set(valid) and name not in valid
    with pytest.raises(SalsegError, match=r"unknown network 'nope'; available: .*unet"):
        build("nope", in_channels=1, num_classes=2)
    with pytest.raises(SalsegError, match=r"unknown module 'nope'; available: .*salstm"):
        build("unet", "nope", in_channels=1, num_classes=2)


def test_unet_entry_states_constraints_and_recipe():
    entry = get_network("unet")
    assert entry.dims == (2, 3) and not entry.has_self_attention and entry.fixed_size is None
    assert entry.recipe == {"optimizer": "sgd", "lr": 0.01, "momentum": 0.99, "weight_decay": 3e-5,
                            "nesterov": True}
    assert isinstance(build("unet", in_channels=1, num_classes=2, width=2), nn.Module)


def test_module_options_are_routed_to_the_head(fresh_registry):
    model = build("unet", "salstm", in_channels=1, num_classes=2, width=2, features=4, scale="paper",
                  patch_size=(16, 16))
    assert model.head.scale is None and model.head.features == 4
    assert model.backbone.num_classes == 4  # the backbone's output = the feature channels
