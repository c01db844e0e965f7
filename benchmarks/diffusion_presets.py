"""Diffusion presets side by side: parameters (salseg vs the reference implementation) and sampling time.

    python benchmarks/diffusion_presets.py [--size 256] [--channels 3] [--device cpu] [--calls 2] [--json out.json]

For each MedSegDiff preset (paper, official-b, official-++, port) and LDSeg arch (release, compact) it builds the
model for a binary task at ``--size`` px (LDSeg: the release's 512 px unless ``--size`` is given), counts its
parameters, times ``--calls`` denoiser evaluations (after one warm-up) and reports seconds per sample for the
preset's default sampler and steps (= calls per sample x seconds per call: measured per call, multiplied; the
full 1000-step DDPM of the official presets is never run here). Reference parameter counts are the numbers the
reference code itself gives, instantiated beside salseg (docs/diffusion.md says how): they apply to 256 px, 3
channels (MedSegDiff: ISIC flags; port at 256 px) and 512 px RGB (LDSeg release, four networks summed).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from salseg.nets import build

REFERENCE = {  # (size, channels) -> count, from the reference implementations
    ("official-b", 256, 3): 130_527_814,     # ImprintLab/MedSegDiff v1 (+246,272 for its bottleneck conv made in forward)
    ("port", 256, 3): 55_855_681,            # med-seg-diff-pytorch 0.3.3
    ("ldseg-release", 512, 3): 185_617 + 270_566 + 294_061 + 1_013_873,  # FahimZaman/LDSeg, TensorFlow, trainable
}


def timed_calls(fn, calls: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--calls", type=int, default=2)
    ap.add_argument("--skip", nargs="*", default=[], help="presets to leave out (e.g. official-++ on a small CPU)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    dev = torch.device(args.device)
    rows = []
    cases = [("medsegdiff", p, {"preset": p}) for p in ("paper", "official-b", "official-++", "port")]
    cases += [("ldseg", "ldseg-release", {"arch": "release", "label_input": "index"}),
              ("ldseg", "ldseg-compact", {"arch": "compact"})]
    print(f"device {dev}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}")
    print(f"{'model':<14} {'size':>5} {'params':>13} {'reference':>13} {'s/call':>8} {'sampler':>10} "
          f"{'steps':>5} {'s/sample':>9}")
    for network, name, opts in cases:
        if name in args.skip:
            continue
        size = args.size if network == "medsegdiff" or args.size != 256 else 512
        model = build(network, in_channels=args.channels, num_classes=2, dim=2,
                      plans={"patch_size": [size, size]}, **opts).to(dev).eval()
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        image = torch.randn(1, args.channels, size, size, device=dev)
        t = torch.full((1,), 500, device=dev, dtype=torch.long)
        if network == "medsegdiff" and hasattr(model, "denoise_full"):
            x = torch.randn(1, 1, size, size, device=dev)
            call = lambda: model.denoise_full(x, image, t)  # noqa: E731
        elif network == "medsegdiff":
            x = torch.randn(1, 1, size, size, device=dev)
            call = lambda: model.denoise(x, image, t)  # noqa: E731
        else:
            cond = model.image_encoder(image)
            call = lambda: model.run_denoiser(model.sampling_denoiser(), cond, cond, t)  # noqa: E731
        with torch.no_grad():
            per_call = timed_calls(call, args.calls)
        sampler = model.default_sampler
        steps = model.schedule.timesteps if sampler == "ddpm" else model.default_steps
        ref = REFERENCE.get((name, size, args.channels))
        rows.append(dict(model=name, size=size, params=params, reference=ref, seconds_per_call=per_call,
                         sampler=sampler, steps=steps, seconds_per_sample=per_call * steps))
        ref_text = "-" if ref is None else f"{ref:,}"
        print(f"{name:<14} {size:>5} {params:>13,} {ref_text:>13} {per_call:>8.3f} "
              f"{sampler:>10} {steps:>5} {per_call * steps:>9.1f}", flush=True)
        del model
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
