"""Parameters, FLOPs and latency of network + module pairs (the paper's Table III).

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass: it counts matrix products
and convolutions as 2 * multiply-accumulates (FLOPs = 2 x MACs) and ignores element-wise ops, norms and softmax.
Tools such as thop/ptflops (and most papers' "FLOPs") report MACs, so each record also carries ``macs`` = flops / 2.
Latency is the median of ``repeats`` timed forward passes (``torch.utils.benchmark.Timer``, which synchronises CUDA)
after ``warmup`` untimed ones, in eval mode under ``torch.no_grad``, batch size 1.
"""

from __future__ import annotations

import inspect
import logging
import statistics
from typing import Callable, Sequence

import torch
from torch.utils import benchmark
from torch.utils.flop_counter import FlopCounterMode

from salseg.errors import ConfigError, SalsegError
from salseg.nets import registry

log = logging.getLogger(__name__)

SLICE_K = 3


def _accepts(factory, name: str) -> bool:
    """Whether ``factory`` names the keyword ``name`` explicitly (``**options`` factories may refuse unknown ones)."""
    return name in inspect.signature(factory).parameters


def _size_reason(entry: registry.NetworkEntry, size: tuple[int, ...]) -> str | None:
    if entry.fixed_size and tuple(entry.fixed_size) != tuple(size[-len(entry.fixed_size):]):
        return f"{entry.name} accepts only input size {'x'.join(map(str, entry.fixed_size))}"
    if entry.divisor > 1 and any(s % entry.divisor for s in size):
        return f"{entry.name} needs sizes divisible by {entry.divisor}"
    return None


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def time_forward(model: torch.nn.Module, x: torch.Tensor, repeats: int, warmup: int, num_threads: int) -> float:
    """Median latency in milliseconds of ``model(x)``."""
    with torch.no_grad():
        for _ in range(warmup):
            model(x)
        timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": x}, num_threads=num_threads)
        times = [timer.timeit(1).median for _ in range(repeats)]
    return statistics.median(times) * 1000.0


def _pct(value, base):
    if value is None or base in (None, 0):
        return None
    return 100.0 * (value - base) / base


def measure_efficiency(network: str, modules: Sequence[str], *, num_classes: int, sizes: Sequence[int],
                       in_channels: int = 1, dim: int = 2, device: str = "cpu", repeats: int = 10, warmup: int = 2,
                       options: dict | None = None, num_threads: int | None = None, seed: int = 0,
                       progress: Callable[[str, int, int], None] | None = None) -> list[dict]:
    """One record per (size, module): params, flops, macs, latency_ms, input_shape and % increase over ``none``.

    Invalid pairs (or sizes the network refuses) give a record with ``skipped`` = the reason and None numbers.
    Increases are relative to the ``none`` record of the same size (None when ``none`` was not measured).
    """
    if repeats < 1 or warmup < 0:
        raise ConfigError(f"repeats must be >= 1 and warmup >= 0 (got {repeats}, {warmup})")
    if not modules or not sizes:
        raise ConfigError("give at least one module and one size")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SalsegError(f"device {device!r} asked for, but CUDA is not available")
    entry = registry.get_network(network)
    for m in modules:
        registry.get_module(m)  # unknown names fail before any work
    num_threads = int(num_threads or torch.get_num_threads())
    records, total, done = [], len(sizes) * len(modules), 0
    for s in sizes:
        size = (int(s),) * dim
        for module in modules:
            rec = {"network": network, "module": module, "dim": dim, "size": list(size), "device": device,
                   "input_shape": None, "params": None, "flops": None, "macs": None, "latency_ms": None,
                   "skipped": None}
            reason = registry.invalid_reason(network, module, dim) or _size_reason(entry, size)
            if reason is None:
                try:
                    rec.update(_measure_one(entry, network, module, size, num_classes, in_channels, dim, device,
                                            repeats, warmup, dict(options or {}), num_threads, seed))
                except SalsegError as e:
                    reason = str(e)
            if reason:
                log.warning("skipping %s + %s at %s: %s", network, module, size, reason)
                rec["skipped"] = reason
            records.append(rec)
            done += 1
            if progress:
                progress("measuring efficiency", done, total)
    _add_increases(records)
    return records


def _measure_one(entry, network, module, size, num_classes, in_channels, dim, device, repeats, warmup, options,
                 num_threads, seed) -> dict:
    if _accepts(entry.factory, "patch_size"):
        options.setdefault("patch_size", list(size))
    torch.manual_seed(seed)
    model = registry.build(network, module, in_channels=in_channels, num_classes=num_classes, dim=dim,
                           **options).to(device).eval()
    is_slice = getattr(model, "is_slice_model", False)
    shape = (1, getattr(model, "k", SLICE_K), in_channels, *size) if is_slice else (1, in_channels, *size)
    x = torch.randn(shape, device=device)
    return {"input_shape": list(shape), "params": count_params(model), "flops": (flops := count_flops(model, x)),
            "macs": flops // 2, "latency_ms": time_forward(model, x, repeats, warmup, num_threads)}


def _add_increases(records: list[dict]) -> None:
    base = {tuple(r["size"]): r for r in records if r["module"] == "none" and not r["skipped"]}
    for r in records:
        b = base.get(tuple(r["size"]), {})
        for key in ("params", "flops", "latency_ms"):
            r[f"{key}_increase_pct"] = _pct(r[key], b.get(key))
