"""Module positions (head / bottleneck / skip / parallel): encoder-decoder interface, shapes, residual fusion,
amortised volume inference against window-by-window prediction, parameter/FLOP overhead by formula, bad input."""

import pytest
import torch

from salseg.bench.efficiency import count_flops, measure_efficiency
from salseg.errors import ConfigError, SalsegError
from salseg.nets import build
from salseg.nets.capabilities import Capabilities, capabilities_of
from salseg.nets.modules.positions import (POSITIONS, check_position, neighbour_index, position_of,
                                           predict_volume_amortized)

S = 32
# tiny backbones with the encode/decode interface: (network, options, input size)
BACKBONES = {
    "unet": ({"width": 4, "patch_size": (S, S)}, S),
    "mtunet": ({"width": 8, "heads": 2, "img_size": [32, 32]}, 32),
    "swinunet": ({"width": 12, "heads": [1, 1, 2, 2], "window": 2}, 32),
}


def _nparams(m):
    return sum(p.numel() for p in m.parameters())


def _build(network, module="salstm", position="head", classes=3, in_channels=1, features=4, **kw):
    opts, _ = BACKBONES[network]
    torch.manual_seed(0)
    model = build(network, module, in_channels=in_channels, num_classes=classes, position=position,
                  features=features, **{**opts, **kw})
    return model.eval()


def _has_interface(network):
    opts, _ = BACKBONES[network]
    net = build(network, in_channels=1, num_classes=2, **opts)
    return capabilities_of(net).encoder_decoder


@pytest.mark.parametrize("network", list(BACKBONES))
def test_encode_decode_equals_forward(network):
    if not _has_interface(network):
        pytest.skip(f"{network} has no encoder/decoder interface yet")
    opts, size = BACKBONES[network]
    torch.manual_seed(0)
    net = build(network, in_channels=1, num_classes=3, deep_supervision=False, **opts).eval()
    x = torch.randn(2, 1, size, size)
    with torch.no_grad():
        feats = net.encode(x)
        assert [f.shape[1] for f in feats] == list(net.encoder_channels)
        sizes = [f.shape[-1] for f in feats]
        assert sizes == sorted(sizes, reverse=True) and sizes[-1] < sizes[0]  # shallowest first, bottleneck last
        assert torch.equal(net.decode(feats), net(x))


def test_unet_encode_levels_are_the_encoder_stage_outputs():
    torch.manual_seed(0)
    net = build("unet", in_channels=1, num_classes=2, width=4, patch_size=(S, S)).eval()
    seen = []
    for stage in net.encoder:
        stage.register_forward_hook(lambda mod, inp, out: seen.append(out))
    with torch.no_grad():
        feats = net.encode(torch.randn(1, 1, S, S))
    assert len(feats) == len(seen) == len(net.encoder) and all(torch.equal(a, b) for a, b in zip(feats, seen))


@pytest.mark.parametrize("network", list(BACKBONES))
@pytest.mark.parametrize("position", POSITIONS)
def test_every_position_predicts_the_centre_slice(network, position):
    if position != "head" and not _has_interface(network):
        pytest.skip(f"{network} has no encoder/decoder interface yet")
    _, size = BACKBONES[network]
    model = _build(network, "lstmsa", position, classes=3, in_channels=2)
    assert model.position == position == position_of(model) and model.k == 3
    x = torch.randn(2, 3, 2, size, size)
    with torch.no_grad():
        y = model(x)
        assert y.shape == (2, 3, size, size) and torch.isfinite(y).all()
        x2 = x.clone()
        x2[:, 0] += 1.0  # the previous slice matters to every position (MT-UNet's untrained decoder damps it
        assert not torch.equal(model(x2), y)  # to ~1e-7 at the bottleneck, hence equality, not a tolerance)


@pytest.mark.parametrize("position", ["bottleneck", "skip", "parallel"])
def test_fusion_is_added_to_the_centre_slice_features(position):
    # with proj_out zeroed the module contributes nothing: the output is the backbone on the centre slice alone
    model = _build("unet", "salstm", position, classes=2)
    with torch.no_grad():
        model.fusion.proj_out.weight.zero_()
        model.fusion.proj_out.bias.zero_()
        x = torch.randn(2, 3, 1, S, S)
        assert torch.allclose(model(x), model.backbone(x[:, 1]), atol=1e-6)


def test_neighbour_index_clamps_at_the_ends():
    assert neighbour_index(4).tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 3]]
    assert neighbour_index(1).tolist() == [[0, 0, 0]]
    assert neighbour_index(3, k=5).tolist() == [[0, 0, 0, 1, 2], [0, 0, 1, 2, 2], [0, 1, 2, 2, 2]]


@pytest.mark.parametrize("position", POSITIONS)
def test_amortised_volume_prediction_equals_window_by_window(position):
    model = _build("unet", "lstmsa", position, classes=3, in_channels=2)
    z = 5
    vol = torch.randn(2, z, S, S)
    calls = []
    model.encode_slices = (lambda f: lambda x: calls.append(len(x)) or f(x))(model.encode_slices)
    amortised = predict_volume_amortized(model, vol, batch_size=2)
    assert sum(calls) == z  # one per-slice pass per slice
    windows = vol.permute(1, 0, 2, 3)[neighbour_index(z)]  # (Z, K, C, H, W), clamped neighbours
    with torch.no_grad():
        direct = torch.stack([model(windows[i:i + 1])[0] for i in range(z)], 1)
    assert amortised.shape == (3, z, S, S)
    assert torch.allclose(amortised, direct, atol=1e-5, rtol=1e-5)
    calls.clear()
    chunked = predict_volume_amortized(model, vol, batch_size=3, chunk=2)  # bounded memory: edges re-encoded
    assert sum(calls) == z + 4 and torch.allclose(chunked, direct, atol=1e-5, rtol=1e-5)


def test_parameter_overhead_by_formula():
    f, classes = 4, 3
    # the backbone keeps its deep-supervision heads (as the `none` arm), so the base is the default unet
    base = _nparams(build("unet", in_channels=1, num_classes=classes, width=4, patch_size=(S, S)))
    channels = build("unet", in_channels=1, num_classes=classes, width=4, patch_size=(S, S)).encoder_channels
    lstm = 2 * (2 * f * 4 * f * 25 + 4 * f)  # two ConvLSTM cells (in + hidden -> 4 hidden, 5x5, bias)
    gates = 2 * 3 * (f * f + f)              # LSTM-SA's W_Q, W_K, W_V per direction

    def proj(cin, cout):
        return 0 if cin == cout else cin * cout + cout

    for module, extra in (("salstm", 0), ("lstmsa", gates)):
        c_b, c_s = channels[-1], channels[-2]
        expect = {"bottleneck": base + proj(c_b, f) + lstm + extra + proj(2 * f, c_b),
                  "skip": base + proj(c_s, f) + lstm + extra + proj(2 * f, c_s),
                  "parallel": base + proj(1, f) + lstm + extra + proj(2 * f, channels[0])}
        for position, n in expect.items():
            assert _nparams(_build("unet", module, position, classes=classes, features=f)) == n, (module, position)
    # the default module width away from the head is 32; at level 0 the skip is 4 wide
    m = _build("unet", "salstm", "skip", classes=classes, level=0, features=32)
    assert m.level == 0 and _nparams(m) == base + proj(channels[0], 32) + 2 * (64 * 128 * 25 + 128) + proj(64, 4)


def test_mtunet_bottleneck_overhead_is_under_one_percent():
    # full-size MT-UNet (4 classes), built on the meta device: exact counts without allocating 79 M weights
    if not _has_interface("mtunet"):
        pytest.skip("mtunet has no encoder/decoder interface yet")
    with torch.device("meta"):
        base = _nparams(build("mtunet", in_channels=1, num_classes=4))
        sal = _nparams(build("mtunet", "salstm", in_channels=1, num_classes=4, position="bottleneck"))
        lsa = _nparams(build("mtunet", "lstmsa", in_channels=1, num_classes=4, position="bottleneck"))
    module = (1024 * 32 + 32) + 2 * (64 * 128 * 25 + 128) + (64 * 1024 + 1024)
    assert base == 79_075_064 and sal == base + module and lsa == sal + 2 * 3 * (32 * 32 + 32)
    assert 100 * (lsa - base) / base < 1.0


def test_amortised_flops_are_one_encoder_pass_plus_module_and_decoder():
    f, classes = 4, 2
    recs = measure_efficiency("unet", ["none", "salstm"], num_classes=classes, sizes=[S], repeats=1, warmup=0,
                              num_threads=1, options={"width": 4, "features": f}, positions=["bottleneck", "head"])
    by = {(r["module"], r["position"]): r for r in recs}
    assert set(by) == {("none", None), ("salstm", "bottleneck"), ("salstm", "head")}
    none, bott = by[("none", None)], by[("salstm", "bottleneck")]
    assert none["flops_amortized"] == none["flops"] and none["latency_amortized_ms"] == none["latency_ms"]
    backbone = build("unet", in_channels=1, num_classes=classes, width=4, patch_size=(S, S), deep_supervision=False)
    c = backbone.encoder_channels[-1]
    hw = (S // backbone.divisor[0]) ** 2  # the bottleneck's pixels
    assert hw == 16
    module = (3 * 2 * c * f * hw + 4 * 2 * (2 * f) * (4 * f) * 25 * hw + 2 * 2 * 2 * f * f * hw
              + 2 * (2 * f) * c * hw)
    assert bott["flops_amortized"] == count_flops(backbone.eval(), torch.randn(1, 1, S, S)) + module
    assert bott["flops_amortized"] < bott["flops"] and by[("salstm", "head")]["flops_amortized"] < \
        by[("salstm", "head")]["flops"]
    assert bott["flops_amortized_increase_pct"] == pytest.approx(100 * (bott["flops_amortized"] - none["flops"])
                                                                 / none["flops"])


def test_bad_positions_are_refused_clearly():
    with pytest.raises(ConfigError, match="unknown module position 'middle'"):
        build("unet", "salstm", in_channels=1, num_classes=2, width=4, patch_size=(S, S), position="middle")
    with pytest.raises(SalsegError, match="slice modules only"):
        build("unet", "none", in_channels=1, num_classes=2, width=4, patch_size=(S, S), position="bottleneck")
    with pytest.raises(SalsegError, match="'skip' position only"):
        build("unet", "salstm", in_channels=1, num_classes=2, width=4, patch_size=(S, S), position="bottleneck",
              level=1)
    with pytest.raises(ConfigError, match="levels 0..2"):
        build("unet", "salstm", in_channels=1, num_classes=2, width=4, patch_size=(S, S), position="skip", level=3)
    with pytest.raises(SalsegError, match="K=3"):
        _build("unet", "salstm", "bottleneck")(torch.randn(1, 2, 1, S, S))


def test_a_checkpoint_of_one_position_refuses_another():
    check_position("bottleneck", "bottleneck", "x.pt")
    check_position(None, "head", "x.pt")  # checkpoints from before positions existed are head checkpoints
    with pytest.raises(ConfigError, match=r"ckpt\.pt: .*trained with module position 'bottleneck'.*'skip'"):
        check_position("bottleneck", "skip", "ckpt.pt")


@pytest.mark.parametrize("position", ["bottleneck", "parallel"])
def test_predictor_amortised_path_equals_window_by_window_sliding_window(position):
    import numpy as np
    from torch import nn

    from salseg.infer.predictor import predict_preprocessed

    model = _build("unet", "salstm", position, classes=2)

    class WindowByWindow(nn.Module):  # the same model without encode_slices: the predictor's generic path
        capabilities = Capabilities(slice_k=3)

        def forward(self, x):
            return model(x)

    data = np.random.default_rng(0).normal(size=(1, 4, 24, 40)).astype(np.float32)
    cfg = {"dim": 2, "patch_size": [16, 16], "batch_size": 2}  # overlapping tiles in y and x
    fast = predict_preprocessed(model, data, cfg, num_classes=2, mirroring=True)
    slow = predict_preprocessed(WindowByWindow(), data, cfg, num_classes=2, mirroring=True)
    np.testing.assert_allclose(fast, slow, atol=1e-5)


def test_bench_efficiency_cli_positions(tmp_path):
    import json

    from typer.testing import CliRunner

    from salseg_cli.main import app

    out = tmp_path / "eff.json"
    result = CliRunner().invoke(app, ["bench", "efficiency", "-n", "unet", "-m", "none", "salstm", "--classes", "2",
                                      "-s", "16", "-r", "1", "--threads", "1", "--option", "width=2", "features=4",
                                      "--module-positions", "head", "skip", "--module-level", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    recs = json.loads(out.read_text())
    assert [(r["module"], r["position"]) for r in recs] == [("none", None), ("salstm", "head"), ("salstm", "skip")]
    assert all(r["flops_amortized"] > 0 and r["latency_amortized_ms"] > 0 for r in recs)
    # the position is shown under the module's name, never cut (the table fits 80 columns)
    assert "@skip" in result.output and "…" not in result.output
    bad = CliRunner().invoke(app, ["bench", "efficiency", "-n", "unet", "--classes", "2", "-s", "16",
                                   "--module-positions", "x"])
    assert bad.exit_code != 0 and "unknown module position 'x'" in bad.output and "Traceback" not in bad.output
