"""MedSegDiff presets (paper / official-b / official-++ / port): parameter counts from the published layer lists,
FF-Parser shapes and starts, learned-variance hybrid loss, DPM-Solver++, calibration fusion, ensemble fusion."""

import math

import numpy as np
import pytest
import torch

from salseg.errors import ConfigError
from salseg.nets import build
from salseg.nets.diffusion import samplers, variance
from salseg.nets.diffusion.fusion import fuse, official_reweight, staple
from salseg.nets.diffusion.medsegdiff import PRESETS
from salseg.nets.diffusion.official import calibration_fusion
from salseg.nets.diffusion.schedules import NoiseSchedule


def n_params(m):
    return sum(p.numel() for p in m.parameters())


# ------------------------------------------------------------------------------ parameter counts from layer lists
def conv(cin, cout, k, bias=True):
    return cin * cout * k * k + (cout if bias else 0)


def gn(c):
    return 2 * c


def guided_resblock(cin, cout, emb, scale_shift):
    return (gn(cin) + conv(cin, cout, 3) + emb * (2 * cout if scale_shift else cout) + (2 * cout if scale_shift else cout)
            + gn(cout) + conv(cout, cout, 3) + (0 if cin == cout else conv(cin, cout, 1)))


def guided_attention(c):
    return gn(c) + (c * 3 * c + 3 * c) + (c * c + c)


def guided_unet_params(cin, cout, width, mults, nrb, rates, scale_shift):
    """OpenAI guided-diffusion UNetModel, counted from its layer list."""
    emb = 4 * width
    total = (width * emb + emb) + (emb * emb + emb) + conv(cin, width, 3)
    chans, ch, ds = [width], width, 1
    for level, m in enumerate(mults):
        for _ in range(nrb):
            total += guided_resblock(ch, m * width, emb, scale_shift)
            ch = m * width
            total += guided_attention(ch) if ds in rates else 0
            chans.append(ch)
        if level != len(mults) - 1:
            total += conv(ch, ch, 3)
            chans.append(ch)
            ds *= 2
    total += 2 * guided_resblock(ch, ch, emb, scale_shift) + guided_attention(ch)
    for level, m in list(enumerate(mults))[::-1]:
        for i in range(nrb + 1):
            total += guided_resblock(ch + chans.pop(), width * m, emb, scale_shift)
            ch = width * m
            total += guided_attention(ch) if ds in rates else 0
            if level and i == nrb:
                total += conv(ch, ch, 3)
                ds //= 2
    return total + gn(ch) + conv(width, cout, 3)


def condition_net_params(cin, cout, size, taps, bottleneck_out, base=32, pools=5):
    """The official V1 condition network (nnU-Net v1 Generic_UNet, BatchNorm) + gating + bottleneck projection."""
    feats = [min(base * 2 ** d, 480) for d in range(pools)]
    block = lambda a, b: conv(a, b, 3) + 2 * b  # noqa: E731  conv + BatchNorm(affine)
    total, c = 0, cin
    for f in feats:
        total += block(c, f) + block(f, f)
        c = f
    mid = min(2 * feats[-1], 480)
    total += block(feats[-1], mid) + block(mid, feats[-1])
    for u in range(pools):
        skip = feats[-(u + 1)]
        out = feats[-(u + 2)] if u != pools - 1 else skip
        total += block(2 * skip, skip) + block(skip, out)
    total += conv(feats[0], cout, 1, bias=False)
    for d in range(pools - 1):
        h = size // 2 ** (d + 1)
        total += conv(taps[d], feats[d], 1) + conv(feats[d], 1, 1) + feats[d] * h * (h // 2 + 1) * 2
    return total + conv(feats[-1], bottleneck_out, 1)


# the reference implementations' own counts (instantiated from their public code, see docs/diffusion.md):
OFFICIAL_B_ISIC = 130_527_814          # ImprintLab/MedSegDiff UNetModel_v1preview, README flags, in_ch 4, 256 px
OFFICIAL_B_IN_FORWARD = 480 * 512 + 512  # its bottleneck 1x1 conv, created inside forward() (not a parameter there)
PORT_128_1CH = 51_327_425              # med-seg-diff-pytorch 0.3.3 Unet(dim 64, image_size 128, 1 + 1 channels)
PORT_256_3CH = 55_855_681


def test_official_b_counts_equal_layer_list_and_reference():
    m = build("medsegdiff", in_channels=3, num_classes=2, dim=2, plans={"patch_size": [256, 256]}, preset="official-b")
    main = guided_unet_params(4, 2, 128, (1, 1, 2, 2, 4, 4), 2, {16}, False)
    cond = condition_net_params(3, 1, 256, [128, 128, 256, 256], 512)
    assert n_params(m.unet) == main == 113_673_218
    assert n_params(m.highway) == cond
    assert n_params(m) == OFFICIAL_B_ISIC + OFFICIAL_B_IN_FORWARD


def test_official_pp_counts_equal_layer_list():
    with torch.device("meta"):
        m = build("medsegdiff", in_channels=3, num_classes=2, dim=2, plans={"patch_size": [256, 256]},
                  preset="official-++")
    # attention_resolutions 24 -> rate 256 // 24 = 10, which no level has: attention only in the middle block
    assert n_params(m.unet) == guided_unet_params(4, 2, 512, (1, 1, 2, 2, 4, 4), 12, {10}, True)
    assert n_params(m.highway) == condition_net_params(3, 1, 256, [512, 512, 1024, 1024], 2048)


@pytest.mark.parametrize("size,channels,want", [(128, 1, PORT_128_1CH), (256, 3, PORT_256_3CH)])
def test_port_counts_equal_reference(size, channels, want):
    with torch.device("meta"):
        m = build("medsegdiff", in_channels=channels, num_classes=2, dim=2, plans={"patch_size": [size, size]},
                  preset="port")
    assert n_params(m) == want


def test_presets_refuse_unknown_options_and_names():
    with pytest.raises(ConfigError, match="unknown medsegdiff preset"):
        build("medsegdiff", in_channels=1, num_classes=2, dim=2, plans={"patch_size": [64, 64]}, preset="official-x")
    with pytest.raises(ConfigError, match="res_blocks"):
        build("medsegdiff", in_channels=1, num_classes=2, dim=2, plans={"patch_size": [64, 64]}, preset="port",
              res_blocks=3)
    with pytest.raises(ConfigError, match="divisible by 32"):
        build("medsegdiff", in_channels=1, num_classes=2, dim=2, plans={"patch_size": [48, 48]}, preset="official-b")
    assert set(PRESETS) == {"paper", "official-b", "official-++", "port"}


def test_ff_parser_shapes_and_starts():
    paper = build("medsegdiff", in_channels=1, num_classes=2, dim=2, plans={"patch_size": [32, 48]})
    for k, ff in enumerate(paper.ff_parsers):  # identity start 1 + 0j, rfft2 layout of the level's map
        assert tuple(ff.weight.shape) == (paper.img_blocks[k].conv1.out_channels, 32 // 2 ** k, 48 // 2 ** k // 2 + 1, 2)
        assert torch.equal(ff.weight[..., 0], torch.ones_like(ff.weight[..., 0])) and not ff.weight[..., 1].any()
    torch.manual_seed(0)
    off = build("medsegdiff", in_channels=1, num_classes=2, dim=2, plans={"patch_size": [64, 64]},
                preset="official-b", width=32, res_blocks=1)
    for d, ff in enumerate(off.highway.ff_parsers):  # official start: 0.02 * randn at 1/2^(d+1) of the patch
        assert tuple(ff.weight.shape) == (32 * 2 ** d, 64 // 2 ** (d + 1), 64 // 2 ** (d + 2) + 1, 2)
    assert float(torch.cat([f.weight.detach().flatten() for f in off.highway.ff_parsers]).std()) == pytest.approx(0.02, rel=0.05)
    port = build("medsegdiff", in_channels=1, num_classes=2, dim=2, plans={"patch_size": [32, 32]}, preset="port",
                 width=16)
    for cond, size in zip(port.unet.conditioners, (32, 16, 8, 4)):  # a real map of ones (identity) on full fft2
        w = cond.ff_parser_attn_map
        assert tuple(w.shape) == (cond.norm_input.g.shape[1], size, size) and torch.equal(w, torch.ones_like(w))
        x = torch.randn(2, w.shape[0], size, size)
        y = torch.fft.ifft2(torch.fft.fft2(x) * w).real
        torch.testing.assert_close(y, x, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------ learned variance / hybrid loss
def test_hybrid_loss_on_a_known_tensor():
    sched = NoiseSchedule("linear", 10)
    chain = variance.Chain(sched.alphas_cumprod_f64)
    g = torch.Generator().manual_seed(1)
    shape = (3, 1, 4, 4)
    x0 = (torch.rand(shape, generator=g) > 0.5).double()
    noise, eps_hat = torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g, dtype=torch.float64)
    v = torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1
    t = torch.tensor([0, 4, 9])
    abar = sched.alphas_cumprod_f64
    x_t = torch.stack([math.sqrt(abar[i]) * x0[b] + math.sqrt(1 - abar[i]) * noise[b] for b, i in enumerate(t.tolist())])
    got = variance.hybrid_loss(chain, t, x0, x_t, noise, eps_hat, v)
    betas = 1 - abar / np.append(1.0, abar[:-1])
    for b, i in enumerate(t.tolist()):  # independent numpy formulas (improved DDPM)
        a, a_prev = abar[i], (abar[i - 1] if i else 1.0)
        xt, e, vv, x0b = x_t[b].numpy(), eps_hat[b].numpy(), v[b].numpy(), x0[b].numpy()
        post_var = betas * (1 - np.append(1.0, abar[:-1])) / (1 - abar)
        min_log, max_log = np.log(post_var[1] if i == 0 else post_var[i]), np.log(betas[i])
        logvar = (vv + 1) / 2 * max_log + (1 - (vv + 1) / 2) * min_log
        x0_hat = (xt - math.sqrt(1 - a) * e) / math.sqrt(a)
        c1, c2 = betas[i] * math.sqrt(a_prev) / (1 - a), (1 - a_prev) * math.sqrt(1 - betas[i]) / (1 - a)
        mean = c1 * x0_hat + c2 * xt
        if i == 0:
            cdf = lambda z: 0.5 * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3)))  # noqa: E731
            inv = np.exp(-0.5 * logvar)
            lo, hi = cdf(inv * (x0b - mean - 1 / 255)), cdf(inv * (x0b - mean + 1 / 255))
            logp = np.where(x0b < -0.999, np.log(np.maximum(hi, 1e-12)),
                            np.where(x0b > 0.999, np.log(np.maximum(1 - lo, 1e-12)), np.log(np.maximum(hi - lo, 1e-12))))
            vb = -logp.mean() / math.log(2)
        else:
            tm, tv = c1 * x0b + c2 * xt, post_var[i]
            kl = 0.5 * (-1 + logvar - np.log(tv) + tv / np.exp(logvar) + (tm - mean) ** 2 / np.exp(logvar))
            vb = kl.mean() / math.log(2)
        want = ((noise[b].numpy() - e) ** 2).mean() + vb
        assert float(got[b]) == pytest.approx(want, rel=1e-9)


def test_official_training_loss_adds_ten_times_calibration_mse():
    torch.manual_seed(0)
    m = build("medsegdiff", in_channels=1, num_classes=2, dim=2, plans={"patch_size": [64, 64]},
              preset="official-b", width=32, res_blocks=1, timesteps=50)
    img, tgt = torch.randn(2, 1, 64, 64), torch.randint(0, 2, (2, 64, 64))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    total = m.training_loss(img, tgt, generator=g1)
    t = m.schedule.sample_t(2, "cpu", g2)
    noise = samplers.randn((2, 1, 64, 64), generator=g2, device="cpu")
    x0 = m.target_mask(tgt)
    x_t = m.schedule.q_sample(x0, t, noise)
    eps, v, cal = m.denoise_full(x_t, img, t)
    hybrid = variance.hybrid_loss(m.chain(), t, x0, x_t, noise, eps, v)
    assert float(total) == pytest.approx(float((hybrid + 10 * ((x0 - cal) ** 2).mean((1, 2, 3))).mean()), rel=1e-5)
    total.backward()
    assert all(p.grad is not None for p in m.highway.parameters())


# ------------------------------------------------------------------------------ samplers
@pytest.mark.parametrize("sampler,steps,calls", [("ddim", 7, 7), ("dpm-solver", 7, 7), ("ddpm", None, 12),
                                                 ("ddpm", 5, 5)])
def test_every_sampler_calls_the_denoiser_the_documented_number_of_times(sampler, steps, calls):
    m = build("medsegdiff", in_channels=1, num_classes=2, dim=2, plans={"patch_size": [64, 64]},
              preset="official-b", width=32, res_blocks=1, timesteps=12).eval()
    count = [0]
    orig = m.denoise_full

    def counting(*a):
        count[0] += 1
        return orig(*a)

    m.denoise_full = counting
    out = m.sample(torch.randn(1, 1, 64, 64), sampler=sampler, steps=steps)
    assert count[0] == calls and torch.allclose(out.sum(1), torch.ones(1, 64, 64))


def test_dpm_solver_recovers_a_point_with_the_exact_denoiser():
    sched = NoiseSchedule("linear", 1000)
    target = torch.tensor([0.3, -0.7, 0.9]).reshape(1, 3, 1, 1)
    abar = torch.tensor(sched.alphas_cumprod_f64)

    def exact(x, t):  # the data distribution is a point mass at target
        a = abar[t].reshape(-1, 1, 1, 1).float()
        return (x - a.sqrt() * target) / (1 - a).sqrt()

    x = samplers.sample(exact, (2, 3, 1, 1), sched, sampler="dpm-solver", steps=10,
                        generator=torch.Generator().manual_seed(0))
    x_T = torch.randn((2, 3, 1, 1), generator=torch.Generator().manual_seed(0))
    # with an exact x0 predictor the probability-flow ODE has the closed form x_t = s_t/s_T x_T + (a_t - s_t a_T/s_T) x0
    a = {t: math.sqrt(sched.alphas_cumprod_f64[t]) for t in (0, 999)}
    s_ = {t: math.sqrt(1 - sched.alphas_cumprod_f64[t]) for t in (0, 999)}
    want = s_[0] / s_[999] * x_T + (a[0] - s_[0] * a[999] / s_[999]) * target
    torch.testing.assert_close(x, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x, target.expand(2, 3, 1, 1), atol=0.05, rtol=0)
    assert samplers.dpm_timesteps(1000, 4) == [999, 749, 500, 250, 0]
    with pytest.raises(ConfigError, match="between 1 and 9"):
        samplers.dpm_timesteps(10, 10)


def test_dynamic_threshold():
    x0 = torch.tensor([[0.5, -3.0, 2.0, 0.1]]).reshape(1, 4, 1, 1)
    s = float(torch.quantile(x0.abs().flatten(), 0.995))
    torch.testing.assert_close(samplers.dynamic_threshold(x0), x0.clamp(-s, s) / s)
    small = torch.full((1, 4, 1, 1), 0.5)
    torch.testing.assert_close(samplers.dynamic_threshold(small), small)  # max_value 1 keeps values inside [-1, 1]


def test_calibration_fusion_rule():
    cal = torch.tensor([1.0, 1.0, 0.0, 0.0]).reshape(1, 1, 2, 2).repeat(2, 1, 1, 1)
    s = torch.stack([torch.tensor([0.9, 0.8, 0.0, 0.0]), torch.tensor([0.0, 0.0, 0.7, 0.6])]).reshape(2, 1, 2, 2)
    out = calibration_fusion(s, cal)
    torch.testing.assert_close(out[0], (0.5 * cal[0] + 0.5 * s[0]).clamp(0, 1))   # Dice(s > 0, cal) = 1
    torch.testing.assert_close(out[1], (cal[1] + 0.25 * s[1]).clamp(0, 1))         # Dice = 0 < 0.65


# ------------------------------------------------------------------------------ ensemble fusion
def test_staple_equals_simpleitk():
    sitk = pytest.importorskip("SimpleITK")
    rng = np.random.default_rng(0)
    truth = np.zeros((20, 24), np.uint8)
    truth[5:15, 6:18] = 1
    masks = []
    for fn, fp in [(0.1, 0.05), (0.2, 0.02), (0.05, 0.1), (0.3, 0.01), (0.15, 0.05)]:
        m, r = truth.copy(), rng.random(truth.shape)
        m[(truth == 1) & (r < fn)] = 0
        m[(truth == 0) & (r < fp)] = 1
        masks.append(m)
    f = sitk.STAPLEImageFilter()
    f.SetForegroundValue(1)
    ref = sitk.GetArrayFromImage(f.Execute([sitk.GetImageFromArray(m) for m in masks]))
    w, p, q = staple(torch.tensor(np.stack(masks)))
    np.testing.assert_allclose(w.numpy(), ref, atol=1e-5)
    np.testing.assert_allclose(p.numpy(), f.GetSensitivity(), atol=1e-6)
    np.testing.assert_allclose(q.numpy(), f.GetSpecificity(), atol=1e-6)


def test_official_reweighting_and_fuse():
    s = torch.tensor([[0.2, 1.0], [0.6, 0.0], [1.0, 0.5]])                     # 3 samples x 2 voxels
    mv = s.mean(0)
    torch.testing.assert_close(official_reweight(s), torch.stack([si * mv for si in s]).mean(0))
    probs = torch.stack([torch.stack([1 - si, si]) for si in s])[:, None]       # (N=3, B=1, C=2, 2)
    fused = fuse(probs, "official")
    torch.testing.assert_close(fused[0, 1], official_reweight(s))
    torch.testing.assert_close(fuse(probs, "mean"), probs.mean(0))
    st = fuse(probs, "staple")                                                   # argmax masks: [0,1],[1,0],[1,0]
    assert torch.allclose(st.sum(1), torch.ones(1, 2)) and st.shape == (1, 2, 2)
    with pytest.raises(ConfigError, match="unknown ensemble fusion"):
        fuse(probs, "vote")


# ------------------------------------------------------------------------------ multi-threshold Dice / IoU
def test_multi_threshold_scores_on_a_known_probability_map():
    from salseg.evaluate.thresholds import check_thresholds, threshold_scores

    prob = np.array([[0.0, 0.2, 0.4], [0.6, 0.8, 0.5]])    # scaled by its max 0.8 -> 0, .25, .5, .75, 1, .625
    ref = np.array([[0, 0, 1], [1, 1, 0]], bool)
    got = threshold_scores(prob, ref, (0.1, 0.5, 0.9))
    # t=0.1: pred {.25,.5,.75,1,.625} -> 5 voxels, tp 3: Dice 6/8, IoU 3/5; t=0.5: {.75,1,.625}: tp 2 -> 4/6, 2/4;
    # t=0.9: {1}: tp 1 -> 2/4, 1/3
    assert got["Dice_per_threshold"] == pytest.approx([6 / 8, 4 / 6, 2 / 4])
    assert got["IoU_per_threshold"] == pytest.approx([3 / 5, 2 / 4, 1 / 3])
    assert got["Dice"] == pytest.approx((6 / 8 + 4 / 6 + 2 / 4) / 3)
    assert got["IoU"] == pytest.approx((3 / 5 + 2 / 4 + 1 / 3) / 3)
    empty = threshold_scores(np.zeros((2, 2)), np.zeros((2, 2), bool))
    assert math.isnan(empty["Dice"])
    with pytest.raises(ConfigError, match="thresholds"):
        check_thresholds([0.5, 1.5])


# ------------------------------------------------------------------------------ LDSeg against its TensorFlow release
# trainable parameters of the release's four Keras models (FahimZaman/LDSeg utilities/model.py, model3D.py),
# instantiated with TensorFlow 2.21 at the demo sizes: GlaS 512x512 RGB (2 classes), knee 128x128x256 (3 classes)
RELEASE_2D = {"label_encoder": 185_617, "label_decoder": 270_566, "image_encoder": 294_061, "denoiser": 1_013_873}
RELEASE_3D = {"label_encoder": 787_649, "label_decoder": 787_273, "image_encoder": 138_851, "denoiser": 2_209_937}


def _bn(c):
    return 2 * c  # gain and bias (running statistics are buffers)


def _resconv(cin, cout, k):
    return conv_k(cin, cout, 3, k) + _bn(cout) + conv_k(cout, cout, 3, k) + _bn(cout) + conv_k(cin, cout, 1, k) + _bn(cout)


def conv_k(cin, cout, size, dim, groups=1):
    return size ** dim * cin // groups * cout + cout


def release_counts(dim, in_channels, classes, latent):
    enc = sum(_resconv(a, b, dim) for a, b in zip([1, 16, 32, 64, 64], [16, 32, 64, 64, 32]))
    enc += conv_k(32, 1, 1 if dim == 2 else 2, dim) + 2 * int(np.prod(latent))      # out conv + latent LayerNorm
    if dim == 3:
        enc += sum(conv_k(w, w, 3, 3) for w in (16, 32, 64, 64))          # stride-2 convs between the blocks
    dec = sum(conv_k(a, b, 3, dim) + _resconv(b, b, dim) for a, b in zip([1, 32, 64, 64], [32, 64, 64, 32]))
    dec += conv_k(32, classes, 1, dim) + _bn(classes)
    groups = 1 if dim == 2 else 4
    img = conv_k(in_channels, 16, 3, dim)
    for a, b in zip([16, 32, 64, 64], [32, 64, 64, 32]):
        img += conv_k(a, b, 1, dim) + conv_k(a, b, 3, dim, groups) + conv_k(b, b, 3, dim, groups) + 2 * b
        img += conv_k(b, b, 3, dim) if dim == 2 else 0
    attn = lambda c: 2 * c + 4 * (c * c + c)  # noqa: E731  GroupNorm + dense q, k, v, proj
    img += (attn(64) + attn(32) + conv_k(32, 1, 1, 2) + attn(1)) if dim == 2 else conv_k(32, 1, 3, 3)
    img += _bn(1)

    def res(a, b):  # GN(a), conv, dense time embedding (64 -> b), GN(b), conv, 1x1 residual when widths differ
        return 2 * a + conv_k(a, b, 3, dim) + 64 * b + b + 2 * b + conv_k(b, b, 3, dim) + (0 if a == b else conv_k(a, b, 1, dim))

    den = conv_k(2, 16, 3, dim) + 2 * (64 * 64 + 64)
    widths, att = (16, 32, 64), (False, True, True)
    skips, ch = ([16] if dim == 2 else []), 16
    for i, w in enumerate(widths):
        for _ in range(2):
            den += res(ch, w) + (attn(w) if att[i] else 0)
            ch = w
            skips.append(w)
        if w != 64:
            den += conv_k(w, w, 3, dim)
            skips += [w] if dim == 2 else []
    den += 2 * res(64, 64) + attn(64)
    for i in reversed(range(3)):
        for _ in range(3 if dim == 2 else 2):
            den += res(ch + skips.pop(), widths[i]) + (attn(widths[i]) if att[i] else 0)
            ch = widths[i]
        den += conv_k(widths[i], widths[i], 3, dim) if i else 0
    den += 2 * 16 + conv_k(16, 1, 3, dim)
    return {"label_encoder": enc, "label_decoder": dec, "image_encoder": img, "denoiser": den}


@pytest.mark.parametrize("dim,channels,classes,patch,want", [(2, 3, 2, [512, 512], RELEASE_2D),
                                                             (3, 1, 3, [128, 128, 256], RELEASE_3D)])
def test_ldseg_release_layer_lists_match_the_tensorflow_release(dim, channels, classes, patch, want):
    with torch.device("meta"):
        m = build("ldseg", in_channels=channels, num_classes=classes, dim=dim, plans={"patch_size": patch},
                  label_input="index")
    got = {name: n_params(getattr(m, name)) for name in want}
    assert got == want
    assert got == release_counts(dim, channels, classes, [1] + [p // 16 for p in patch])
    assert m.default_steps == 15 and m.schedule.name == "cosine"


def test_ldseg_release_trains_and_samples_at_small_sizes():
    torch.manual_seed(0)
    m = build("ldseg", in_channels=1, num_classes=3, dim=2, plans={"patch_size": [48, 32]}, timesteps=50)
    img, tgt = torch.randn(2, 1, 48, 32), torch.randint(0, 3, (2, 48, 32))
    loss = m.training_loss(img, tgt)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in m.label_encoder.parameters())
    probs = m.eval().sample(img, steps=3)
    assert probs.shape == (2, 3, 48, 32) and torch.allclose(probs.sum(1), torch.ones(2, 48, 32))
    with pytest.raises(ConfigError, match="arch=compact only"):
        build("ldseg", in_channels=1, num_classes=3, dim=2, plans={"patch_size": [48, 32]}, width=8)
    with pytest.raises(ConfigError, match="label_input"):
        build("ldseg", in_channels=1, num_classes=3, dim=2, plans={"patch_size": [48, 32]}, label_input="rgb")


def test_ldseg_release_attention_residual_option():
    from salseg.nets.diffusion.ldseg_release import Attention

    torch.manual_seed(0)
    a = Attention(8, 4, residual="input")
    b = Attention(8, 4, residual="release")
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 8, 3, 3) * 5 + 2
    torch.testing.assert_close(a(x) - x, b(x) - a.norm(x))
