"""Every network factory and every module refuses an option it does not know, naming the keys it accepts (through
``build``: the network's keys and the module's); the options the framework passes still work; Swin-Unet's recipe."""

import re

import pytest
import torch

from salseg.errors import ConfigError
from salseg.nets import build, get_network, registry

# (network, dim, tiny options that build)
NETWORKS = [
    ("unet", 2, {"width": 2, "patch_size": [16, 16]}),
    ("unet", 3, {"width": 2, "patch_size": [16, 16, 16]}),
    ("mtunet", 2, {"width": 8, "heads": 2, "img_size": [32, 32]}),
    ("swinunet", 2, {"width": 12, "heads": [1, 1, 2, 2], "window": 2}),
    ("swinunetr", 3, {"width": 6, "heads": [1, 1, 2, 2], "window": 2}),
    ("medsegdiff", 2, {"width": 4, "timesteps": 10, "patch_size": [16, 16]}),
    ("ldseg", 2, {"arch": "compact", "width": 4, "timesteps": 10, "denoiser_widths": [4, 8]}),
]


def _keys(msg: str, owner: str) -> set[str]:
    """The keys a message lists after ``<owner> takes:``."""
    part = msg.split(f"{owner} takes: ", 1)[1].split(";")[0]
    return {k.strip() for k in part.split(",")}


@pytest.mark.parametrize("network, dim, opts", NETWORKS, ids=[f"{n}-{d}d" for n, d, _ in NETWORKS])
def test_network_refuses_an_unknown_option_and_lists_its_keys(network, dim, opts):
    with pytest.raises(ConfigError) as err:
        build(network, in_channels=1, num_classes=2, dim=dim, **opts, featurs=8)
    msg = str(err.value)  # a factory may qualify its name, e.g. "medsegdiff (preset paper)"
    assert re.match(rf"{network}( \(preset \w+\))? does not know option\(s\) featurs; {network} takes: ", msg), msg
    named, _ = registry.factory_options(get_network(network).factory)
    assert set(opts) <= _keys(msg, network) and "width" in _keys(msg, network)
    assert "featurs" not in _keys(msg, network) and "in_channels" not in _keys(msg, network)
    # the framework's own options keep working: deep_supervision (every factory), patch_size (where taken)
    extra = {"patch_size": opts.get("patch_size", [16] * dim)} if "patch_size" in named else {}
    for ds in (True, False):
        torch.manual_seed(0)
        assert isinstance(build(network, in_channels=1, num_classes=2, dim=dim, deep_supervision=ds,
                                **{**opts, **extra}), torch.nn.Module)


def test_unet_no_longer_swallows_a_typo():
    with pytest.raises(ConfigError, match=r"unet does not know option\(s\) featurs; unet takes: deep_supervision, "
                                          r"max_features, patch_size, width$"):
        build("unet", in_channels=1, num_classes=2, width=2, featurs=8)


SLICE_MODULES = ["salstm", "lstmsa", "salstm-nl", "lstmsa-nl", "lstm", "sa", "sa+lstm"]


@pytest.mark.parametrize("module", SLICE_MODULES + ["stack"])
@pytest.mark.parametrize("position", ["head", "bottleneck"])
def test_module_typo_is_refused_naming_the_network_and_module_keys(module, position):
    if module == "stack" and position != "head":
        pytest.skip("stack has no position")
    with pytest.raises(ConfigError) as err:
        build("unet", module, in_channels=1, num_classes=2, width=2, patch_size=[16, 16], position=position,
              scal=0.1)
    msg = str(err.value)
    assert msg.startswith(f"unet does not know option(s) scal (nor does module {module}); unet takes: ")
    assert _keys(msg, "unet") == {"deep_supervision", "max_features", "patch_size", "width"}
    assert _keys(msg, module) == ({"k"} if module == "stack" else {"features", "scale"})


def test_module_options_still_reach_the_module():
    model = build("unet", "salstm", in_channels=1, num_classes=2, width=2, patch_size=[16, 16], features=4,
                  scale="1/64")
    assert model.head.features == 4 and model.head.scale == pytest.approx(1 / 64)
    assert build("unet", "stack", in_channels=1, num_classes=2, width=2, patch_size=[16, 16], k=5).k == 5


@pytest.mark.parametrize("network, opts", [("mtunet", {"width": 8, "heads": 2, "img_size": [32, 32]}),
                                           ("swinunet", {"width": 12, "heads": [1, 1, 2, 2], "window": 2})])
def test_reca_typo_is_refused_naming_both_and_its_options_work(network, opts):
    with pytest.raises(ConfigError) as err:
        build(network, "reca", in_channels=1, num_classes=2, **opts, strategie="sts")
    msg = str(err.value)
    assert msg.startswith(f"{network} does not know option(s) strategie (nor does module reca)")
    assert _keys(msg, "reca") == {"align", "strategy"}
    assert not {"strategy", "align", "attention"} & _keys(msg, network)  # those belong to reca / the registry
    assert build(network, "reca", in_channels=1, num_classes=2, **opts, strategy="sts").strategy == "sts"


def test_a_factory_without_options_is_checked_on_its_signature(monkeypatch):
    monkeypatch.setattr(registry, "_networks", dict(registry.networks()))
    from torch import nn

    @registry.register_network("toy-strict", dims=(2,))
    def toy(in_channels, num_classes, dim, plans, *, deep_supervision=True, depth=1):
        return nn.Conv2d(in_channels, num_classes, 1)

    assert isinstance(build("toy-strict", in_channels=1, num_classes=2, depth=2), nn.Conv2d)
    with pytest.raises(ConfigError, match=r"toy-strict does not know option\(s\) dpeth; toy-strict takes: "
                                          r"deep_supervision, depth"):
        build("toy-strict", in_channels=1, num_classes=2, dpeth=2)

    @registry.register_network("toy-attn", dims=(2,), has_self_attention=True)
    def attn(in_channels, num_classes, dim, plans, *, attention="none", strategy="ists", align=False):
        return nn.Conv2d(in_channels, num_classes, 1)

    assert isinstance(build("toy-attn", "reca", in_channels=1, num_classes=2, strategy="sts"), nn.Conv2d)
    with pytest.raises(ConfigError, match=r"toy-attn does not know option\(s\) width \(nor does module reca\); "
                                          r"toy-attn takes: none; reca takes: align, strategy"):
        build("toy-attn", "reca", in_channels=1, num_classes=2, width=4)

    @registry.register_network("toy-bare", dims=(2,))
    def bare(in_channels, num_classes, dim, plans):  # no deep_supervision keyword: build does not pass it
        return nn.Conv2d(in_channels, num_classes, 1)

    assert isinstance(build("toy-bare", "salstm", in_channels=1, num_classes=2, features=4), nn.Module)
    with pytest.raises(ConfigError, match=r"toy-bare does not know option\(s\) width \(nor does module salstm\); "
                                          r"toy-bare takes: none; salstm takes: features, scale"):
        build("toy-bare", "salstm", in_channels=1, num_classes=2, width=4)


def test_swinunet_recipe_is_the_published_one():
    recipe = get_network("swinunet").recipe
    assert (recipe["optimizer"], recipe["lr"], recipe["momentum"], recipe["weight_decay"]) == ("sgd", 0.05, 0.9, 1e-4)


@pytest.mark.parametrize("args, message", [
    (["unet", "-c", "2d", "-o", "featurs=8"], "unet does not know option(s) featurs; unet takes: deep_supervision, "
                                                "max_features, patch_size, width"),
    (["unet", "-m", "salstm", "-c", "2.5d", "-o", "scal=0.1"], "unet does not know option(s) scal (nor does module "
                                                                 "salstm); unet takes: deep_supervision, max_features, "
                                                                 "patch_size, width; salstm takes: features, scale"),
    (["unet", "-m", "stack", "-c", "2.5d", "-o", "k=4"], "stack option k=4 must be an odd integer"),
])
def test_train_cli_refuses_unknown_options_with_exit_2_and_writes_nothing(tmp_path, args, message):
    from typer.testing import CliRunner

    from salseg_cli.main import app
    from tests.train.conftest import write_dataset

    root = write_dataset(tmp_path / "root")
    res = CliRunner().invoke(app, ["--root", str(root), "train", "Tiny", *args, "--epochs", "1",
                                   "--iters-per-epoch", "1", "--device", "cpu", "-q"])
    text = " ".join((res.output + (res.stderr if res.stderr_bytes else "")).split())
    assert res.exit_code == 2 and message in text and "Traceback" not in text, text
    assert not (root / "results").exists() or not any((root / "results").rglob("*"))
