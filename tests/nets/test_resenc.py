"""resenc: builds in 2D/3D from plans, parameter count by a formula over the plans, deep-supervision outputs at the
pooling's resolutions, encode/decode == forward, nnU-Net's init, every slice module at every position trains one
step on it (2.5d input), unknown options refused."""

import math

import pytest
import torch

from salseg.errors import ConfigError, SalsegError
from salseg.nets import build, registry
from salseg.nets.modules.positions import POSITIONS
from salseg.nets.resenc import BasicBlock

torch.set_num_threads(1)


def _conv(cin, cout, kernel, bias=True):
    return cin * cout * math.prod(kernel) + (cout if bias else 0)


def expected_params(plans: dict, in_channels: int, num_classes: int, deep_supervision: bool = True) -> int:
    """Parameters of a residual-encoder U-Net by hand: blocks x convs per stage (conv + InstanceNorm affine)."""
    pools, kernels = plans["pool_op_kernel_sizes"], plans["conv_kernel_sizes"]
    feats, blocks = plans["features_per_stage"], plans["n_blocks_per_stage"]
    dec = plans.get("n_conv_per_stage_decoder", [1] * (len(feats) - 1))[0]
    n = len(feats)
    total = _conv(in_channels, feats[0], kernels[0]) + 2 * feats[0]              # stem
    for s in range(n):
        for b in range(blocks[s]):
            cin = (feats[s - 1] if s else feats[0]) if b == 0 else feats[s]
            total += _conv(cin, feats[s], kernels[s]) + 2 * feats[s]            # conv1 + norm
            total += _conv(feats[s], feats[s], kernels[s]) + 2 * feats[s]       # conv2 + norm
            if cin != feats[s]:
                total += _conv(cin, feats[s], [1], bias=False) + 2 * feats[s]   # 1x1 projection + norm
    for s in range(n - 1, 0, -1):
        f = feats[s - 1]
        total += _conv(feats[s], f, pools[s])                                    # transposed conv
        total += _conv(2 * f, f, kernels[s - 1]) + 2 * f
        total += (dec - 1) * (_conv(f, f, kernels[s - 1]) + 2 * f)
    heads = max(1, n - 2) if deep_supervision else 1                             # deepest DS head left out
    return total + sum(_conv(feats[j], num_classes, [1]) for j in range(heads))


PLANS_2D = {"pool_op_kernel_sizes": [[1, 1], [2, 2], [2, 2], [2, 2]], "conv_kernel_sizes": [[3, 3]] * 4,
            "features_per_stage": [4, 8, 16, 16], "n_blocks_per_stage": [1, 3, 4, 6], "patch_size": [32, 32]}
PLANS_3D = {"pool_op_kernel_sizes": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [1, 2, 2]],
            "conv_kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]], "features_per_stage": [4, 8, 12, 12],
            "n_blocks_per_stage": [1, 2, 2, 3], "n_conv_per_stage_decoder": [1, 1, 1], "patch_size": [8, 32, 32]}


def _nparams(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("plans,dim", [(PLANS_2D, 2), (PLANS_3D, 3)])
def test_builds_from_plans_with_the_formula_parameter_count(plans, dim):
    torch.manual_seed(0)
    net = build("resenc", in_channels=2, num_classes=3, dim=dim, plans=plans)
    assert net.features == plans["features_per_stage"]
    assert net.n_blocks_per_stage == plans["n_blocks_per_stage"]
    assert [sum(isinstance(m, BasicBlock) for m in st) for st in net.encoder] == plans["n_blocks_per_stage"]
    assert _nparams(net) == expected_params(plans, 2, 3)
    flat = build("resenc", in_channels=2, num_classes=3, dim=dim, plans=plans, deep_supervision=False)
    assert _nparams(flat) == expected_params(plans, 2, 3, deep_supervision=False)
    # the first stage's kernel follows the plans (anisotropic 3D: 1 x 3 x 3)
    assert net.encoder[0][0].conv.kernel_size == tuple(plans["conv_kernel_sizes"][0])


def test_known_nnunet_count():
    """nnU-Net's ResEnc 2D example (7 stages, 512^2, 1 channel, 3 classes): its ResidualEncoderUNet has 105,918,322
    parameters (dynamic_network_architectures 0.4, counted by benchmarks/plan_parity.py); minus the deepest head
    (512 * 3 + 3 = 1,539) that is 105,916,783."""
    plans = {"pool_op_kernel_sizes": [[1, 1]] + [[2, 2]] * 6, "conv_kernel_sizes": [[3, 3]] * 7,
             "features_per_stage": [32, 64, 128, 256, 512, 512, 512], "n_blocks_per_stage": [1, 3, 4, 6, 6, 6, 6]}
    net = build("resenc", in_channels=1, num_classes=3, dim=2, plans=plans)
    assert _nparams(net) == expected_params(plans, 1, 3) == 105_916_783


@pytest.mark.parametrize("plans,dim", [(PLANS_2D, 2), (PLANS_3D, 3)])
def test_deep_supervision_outputs_match_the_pooling(plans, dim):
    torch.manual_seed(0)
    net = build("resenc", in_channels=1, num_classes=3, dim=dim, plans=plans).train()
    size = plans["patch_size"]
    outs = net(torch.randn(1, 1, *size))
    strides = [1] * dim
    want = []
    for p in plans["pool_op_kernel_sizes"][:len(plans["features_per_stage"]) - 2]:
        strides = [a * b for a, b in zip(strides, p)]
        want.append([s // t for s, t in zip(size, strides)])
    assert [list(o.shape[2:]) for o in outs] == want
    assert net.deep_supervision_scales == [[w / s for w, s in zip(ws, size)] for ws in want]
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, *size)).shape == (1, 3, *size)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_encode_decode_reproduce_forward(mode):
    torch.manual_seed(0)
    net = build("resenc", in_channels=1, num_classes=3, plans=PLANS_2D)
    getattr(net, mode)()
    for m in net.modules():  # non-zero residual branches so the comparison covers them
        if isinstance(m, BasicBlock):
            torch.nn.init.ones_(m.conv2.norm.weight)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        feats = net.encode(x)
        assert [f.shape[1] for f in feats] == net.encoder_channels == PLANS_2D["features_per_stage"]
        assert [f.shape[-1] for f in feats] == [32, 16, 8, 4]
        out, ref = net.decode(feats), net(x)
    if mode == "train":
        assert all(torch.equal(a, b) for a, b in zip(out, ref))
    else:
        assert torch.equal(out, ref)
    assert net.divisor == [8, 8]


def test_nnunet_init_residual_branches_start_at_zero():
    torch.manual_seed(0)
    net = build("resenc", in_channels=1, num_classes=2, plans=PLANS_2D)
    blocks = [m for m in net.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == sum(PLANS_2D["n_blocks_per_stage"])
    norms = [b.conv2.norm for b in blocks]
    assert all(float(n.weight.detach().abs().sum()) == 0 and float(n.bias.detach().abs().sum()) == 0 for n in norms)
    conv = net.encoder[1][0].conv1.conv  # He normal, fan-in, slope 0.01
    fan_in = conv.weight[0].numel()
    assert abs(float(conv.weight.detach().std()) - math.sqrt(2 / (1 + 0.01 ** 2) / fan_in)) < 0.15 * math.sqrt(2 / fan_in)
    assert float(conv.bias.detach().abs().sum()) == 0
    # a block with a stride: average-pooling skip + projection; one without: identity skip
    strided = net.encoder[1][0]
    assert [type(m).__name__ for m in strided.skip] == ["AvgPool2d", "ConvNormAct"]
    assert strided.skip[1].conv.bias is None
    assert len(net.encoder[1][1].skip) == 0


def test_defaults_and_overrides():
    net = build("resenc", in_channels=1, num_classes=2, dim=2, patch_size=(64, 64), width=4)
    assert net.n_blocks_per_stage == [1, 3, 4, 6, 6]           # nnU-Net's ResEnc pattern, sliced to 5 stages
    assert net.features == [4, 8, 16, 32, 64]
    net = build("resenc", in_channels=1, num_classes=2, dim=2, plans=PLANS_2D, blocks_per_stage=[1, 1, 1, 1])
    assert net.n_blocks_per_stage == [1, 1, 1, 1]
    short = dict(PLANS_2D, n_blocks_per_stage=[2, 2])           # plans for fewer stages continue the pattern
    assert build("resenc", in_channels=1, num_classes=2, plans=short).n_blocks_per_stage == [2, 2, 4, 6]


def test_bad_input_and_unknown_options_are_refused():
    with pytest.raises(ConfigError, match="resenc does not know option.*hidden"):
        build("resenc", in_channels=1, num_classes=2, plans=PLANS_2D, hidden=3)
    with pytest.raises(ConfigError, match="n_blocks_per_stage"):
        build("resenc", in_channels=1, num_classes=2, plans=PLANS_2D, blocks_per_stage=[1, 0, 1, 1])
    with pytest.raises(ConfigError, match="does not have 3 values"):
        build("resenc", in_channels=1, num_classes=2, dim=3, plans=PLANS_2D)
    net = build("resenc", in_channels=1, num_classes=2, plans=PLANS_2D).eval()
    with pytest.raises(SalsegError, match="resenc input size .* not divisible"):
        net(torch.randn(1, 1, 30, 32))


def _slice_modules():
    return sorted(m for m, e in registry.modules().items() if e.kind == "slice")


@pytest.mark.parametrize("position", POSITIONS)
def test_every_slice_module_trains_one_step_on_resenc(position):
    """2.5d: (B, K=3, C, H, W) -> centre logits; one SGD step changes the weights and gives a finite loss."""
    plans = dict(PLANS_2D, n_blocks_per_stage=[1, 1, 2, 1])
    trained = []
    for module in _slice_modules():
        torch.manual_seed(0)
        try:
            model = build("resenc", module, in_channels=1, num_classes=3, dim=2, plans=plans, position=position,
                          features=4)
        except SalsegError as e:  # a module without a separable fusion core is a head-only module
            assert position != "head" and "only at position 'head'" in str(e), str(e)
            continue
        model.train()
        x, y = torch.randn(2, 3, 1, 32, 32), torch.randint(0, 3, (2, 32, 32))
        out = model(x)
        out = out[0] if isinstance(out, (list, tuple)) else out
        assert out.shape == (2, 3, 32, 32)
        loss = torch.nn.functional.cross_entropy(out, y)
        before = [p.detach().clone() for p in model.parameters()]
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        loss.backward()
        opt.step()
        assert math.isfinite(float(loss.detach()))
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
        assert model.position == position
        trained.append(module)
    assert {"salstm", "lstmsa"} <= set(trained)


def test_bench_efficiency_measures_resenc():
    from salseg.bench.efficiency import measure_efficiency

    recs = measure_efficiency("resenc", ["none", "salstm"], num_classes=3, sizes=[32], repeats=1, warmup=0,
                              options={"width": 4}, num_threads=1)
    assert [r["skipped"] for r in recs] == [None, None]
    none = build("resenc", in_channels=1, num_classes=3, patch_size=[32, 32], width=4)
    assert recs[0]["params"] == _nparams(none) and recs[1]["params"] > recs[0]["params"]


def test_stack_baseline_trains_one_step_on_resenc():
    """``stack``: K slices as K*C input channels of the unchanged resenc (built through the same factory)."""
    torch.manual_seed(0)
    model = build("resenc", "stack", in_channels=1, num_classes=3, dim=2, plans=PLANS_2D).train()
    plain = build("resenc", in_channels=3, num_classes=3, dim=2, plans=PLANS_2D)
    assert _nparams(model) == _nparams(plain)        # only the stem sees K*C = 3 channels
    out = model(torch.randn(2, 3, 1, 32, 32))
    out = out[0] if isinstance(out, (list, tuple)) else out
    assert out.shape == (2, 3, 32, 32)
    loss = torch.nn.functional.cross_entropy(out, torch.randint(0, 3, (2, 32, 32)))
    loss.backward()
    assert math.isfinite(float(loss.detach()))
