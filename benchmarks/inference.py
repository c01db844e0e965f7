"""Sliding-window throughput: salseg.infer against MONAI's ``sliding_window_inference`` with the same 3D unet.

    /work/venv/bin/python benchmarks/inference.py [--shape 80 160 160] [--patch 48 96 96] [--width 8]
        [--overlap 0.5] [--batch 2] [--repeats 3] [--threads 1] [--device cpu|cuda]

Both run the same network (salseg's plans-free 3D ``unet``), the same patch, 50 % overlap, Gaussian weighting (sigma
= patch / 8), the same tile batch size, no mirroring, in eval mode under ``torch.inference_mode``. Prints the median
time of ``--repeats`` interleaved runs after one warm-up, the throughput in voxels/s, the ratio, the number of tiles
and the agreement of the two outputs. The two differ in where they put the tiles when the image is not a whole
number of steps (salseg spreads the tiles evenly, as nnU-Net; MONAI steps by exactly patch x (1 - overlap) and
clamps the last tile to the border) and in the Gaussian's floor (MONAI clamps it at 1e-3); with InstanceNorm
networks a tile's logits depend on the tile, so the outputs differ a little. With constant weights on an image that
is a whole number of steps they agree to float precision (printed as a check). Skips with a message when MONAI is
not installed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def timed(fns, repeats: int, device: torch.device) -> list[tuple[float, torch.Tensor]]:
    """Median time of each function; runs are interleaved (a, b, b, a, ...) so load drift hits both alike."""
    outs = [fn() for fn in fns]  # warm-up
    times = [[] for _ in fns]
    for r in range(repeats):
        order = list(range(len(fns)))
        for i in (order if r % 2 == 0 else order[::-1]):  # a, b, b, a, ...: neither always goes first
            fn = fns[i]
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            outs[i] = fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[i].append(time.perf_counter() - t0)
    return [(statistics.median(t), o) for t, o in zip(times, outs)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=int, nargs=3, default=[80, 160, 160], help="volume (z, y, x)")
    ap.add_argument("--patch", type=int, nargs=3, default=[48, 96, 96], help="patch (z, y, x)")
    ap.add_argument("--width", type=int, default=8, help="unet features of the first stage")
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--overlap", type=float, default=0.5, help="overlap fraction (salseg step = 1 - overlap)")
    ap.add_argument("--batch", type=int, default=2, help="tiles per forward pass (both implementations)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    try:
        from monai.inferers import sliding_window_inference
    except ImportError:
        print("MONAI is not installed (pip install monai): skipping the comparison")
        return

    from salseg.infer.sliding_window import compute_steps, sliding_window_predict
    from salseg.nets import build

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    net = build("unet", "none", in_channels=1, num_classes=args.classes, dim=3, plans=None, width=args.width,
                patch_size=args.patch, deep_supervision=False).to(device).eval()
    image = torch.randn(1, *args.shape, device=device)
    voxels = image[0].numel()
    step = 1.0 - args.overlap
    n_tiles = 1
    for s in compute_steps(args.shape, args.patch, step):
        n_tiles *= len(s)

    def run_salseg():
        with torch.inference_mode():
            return sliding_window_predict(net, image, args.patch, num_classes=args.classes, step=step,
                                          gaussian=True, batch_size=args.batch, device=device)

    def run_monai():
        with torch.inference_mode():
            return sliding_window_inference(image[None], roi_size=args.patch, sw_batch_size=args.batch,
                                            predictor=net, overlap=args.overlap, mode="gaussian",
                                            sigma_scale=0.125, sw_device=device, device=device)[0]

    # same tiles and constant weights -> the same output (on an image that is a whole number of steps)
    even = [p + int(p * step) for p in args.patch]
    small = torch.randn(1, *even, device=device)
    with torch.inference_mode():
        same = (sliding_window_predict(net, small, args.patch, num_classes=args.classes, step=step, gaussian=False,
                                       batch_size=args.batch, device=device)
                - sliding_window_inference(small[None], roi_size=args.patch, sw_batch_size=args.batch, predictor=net,
                                           overlap=args.overlap, mode="constant")[0]).abs().max().item()
    (t_s, out_s), (t_m, out_m) = timed([run_salseg, run_monai], args.repeats, device)
    diff = (out_s.float().cpu() - out_m.float().cpu()).abs().max().item()
    agree = (out_s.argmax(0).cpu() == out_m.argmax(0).cpu()).float().mean().item()
    params = sum(p.numel() for p in net.parameters())
    print(f"3D unet width {args.width} ({params / 1e6:.2f} M params), volume {args.shape}, patch {args.patch}, "
          f"overlap {args.overlap}, batch {args.batch}, device {device}, threads {args.threads}, "
          f"salseg tiles {n_tiles}")
    print(f"salseg sliding_window_predict : {t_s:8.3f} s  {voxels / t_s:12,.0f} voxels/s")
    print(f"MONAI sliding_window_inference: {t_m:8.3f} s  {voxels / t_m:12,.0f} voxels/s")
    print(f"check: constant weights, volume {even} (whole steps): max |difference| {same:.3g}")
    print(f"speed ratio salseg/MONAI: {t_m / t_s:.2f}x   max |logit difference| {diff:.3g}   "
          f"argmax agreement {100 * agree:.2f} %")


if __name__ == "__main__":
    main()
