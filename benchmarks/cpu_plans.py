"""How a CPU prediction runs its network calls (salseg.infer.threads): one batch vs chunks, one stream vs streams.

    python benchmarks/cpu_plans.py MODEL.zip [--tiles 32] [--repeats 3]

MODEL.zip is a salseg package exported with ``--onnx`` (``benchmarks/predict_speed.py`` writes
``<work>/knee_unet_2d.zip``). ``--tiles`` random tiles of the planned patch size are predicted (no mirroring) with:

- torch, the whole batch in one call at torch's thread count (what salseg did before the plans);
- torch, chunks of ``salseg.infer.threads.chunk_size`` tiles, one stream at torch's count (``Plan(1, N)``);
- torch, the same chunks on N single-threaded streams (``Plan(N, 1)``);
- ONNX Runtime (N intra-op threads): the whole batch; chunks on one stream; chunks on N streams.

Runs are interleaved (forward, then backward order) after one warm-up each; medians, and ratios against the first
row, are printed with the load average (the machine may be shared: compare ratios). Outputs of every row are
compared with the first torch row (max |difference| of the logits).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--tiles", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import torch

    from salseg.infer.predictor import Predictor
    from salseg.infer.threads import Plan, chunk_size, run_plan

    n = torch.get_num_threads()
    torch_pred = Predictor.from_model(args.model, device="cpu")
    onnx_pred = Predictor.from_model(args.model, device="cpu", backend="onnxruntime")
    net = torch_pred.model.eval()
    session = onnx_pred.sessions[0]
    patch = list(torch_pred.plans.configuration(torch_pred.config_name).patch_size)
    x = torch.randn([args.tiles, torch_pred.cfg.in_channels, *patch], generator=torch.Generator().manual_seed(0))

    def logits(t):
        y = net(t)
        return y[0] if isinstance(y, (list, tuple)) else y

    def whole(fn):
        def run():
            with torch.inference_mode():
                return fn(x)
        return run

    def planned(fn, plan):
        def run():
            with torch.inference_mode():
                return run_plan(fn, x, plan)
        return run

    rows = {f"torch, one batch of {args.tiles}, {n} threads": whole(logits),
            f"torch, chunks of {chunk_size(x)}, 1 stream x {n} threads": planned(logits, Plan(1, n)),
            f"torch, chunks of {chunk_size(x)}, {n} streams x 1 thread": planned(logits, Plan(n, 1)),
            f"onnxruntime, one batch of {args.tiles}": whole(session),
            f"onnxruntime, chunks of {chunk_size(x)}, 1 stream": planned(session, Plan(1, n)),
            f"onnxruntime, chunks of {chunk_size(x)}, {n} streams": planned(session, Plan(n, 1))}
    print(f"{args.model.name}: {args.tiles} tiles of {patch}, {n} threads; load {os.getloadavg()[0]:.1f}")
    ref = rows[next(iter(rows))]()
    diffs = {k: float((f() - ref).abs().max()) for k, f in rows.items()}  # also the warm-up
    times = {k: [] for k in rows}
    for r in range(args.repeats):
        for k in (list(rows) if r % 2 == 0 else list(rows)[::-1]):
            t0 = time.perf_counter()
            rows[k]()
            times[k].append(time.perf_counter() - t0)
    base = statistics.median(times[next(iter(rows))])
    print(f"{'':52s} {'median s':>9s} {'vs first':>9s} {'max |diff|':>11s}")
    for k, v in times.items():
        m = statistics.median(v)
        print(f"{k:52s} {m:9.2f} {base / m:8.2f}x {diffs[k]:11.1e}")
    print(f"load average after: {'/'.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
