"""Parameters, FLOPs and latency of network + module pairs (the paper's Table III).

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass: it counts matrix products
and convolutions as 2 * multiply-accumulates (FLOPs = 2 x MACs) and ignores element-wise ops, norms and softmax.
Tools such as thop/ptflops (and most papers' "FLOPs") report MACs, so each record also carries ``macs`` = flops / 2.
Latency is the median of ``repeats`` timed forward passes (``torch.utils.benchmark.Timer``, which synchronises CUDA)
after ``warmup`` untimed ones, in eval mode under ``torch.no_grad``, batch size 1.

Per module position (``positions``; slice modules only, see salseg.nets.modules.positions) a record also has
``flops_amortized`` and ``latency_amortized_ms``: the cost per predicted slice in volume inference, where the
per-slice work (``encode_slices`` of one slice) is done once per slice and reused by its neighbours, plus the window's
``decode_from_cache`` (module + decoder; for ``parallel`` the encoder too). For a model without a slice module it
equals ``flops`` / ``latency_ms``.
"""

from __future__ import annotations

import inspect
import logging
import statistics
from typing import Callable, Sequence

import torch
from torch.utils import benchmark
from torch.utils.flop_counter import FlopCounterMode

from salseg.bench.options import module_options
from salseg.errors import ConfigError, SalsegError
from salseg.nets import registry
from salseg.nets.capabilities import capabilities_of
from salseg.nets.modules.positions import check_position_name

log = logging.getLogger(__name__)


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


def time_call(fn: Callable[[], object], repeats: int, warmup: int, num_threads: int,
              tick: Callable[[], None] | None = None) -> float:
    """Median latency in milliseconds of ``fn()``; ``tick()`` after each timed run."""
    with torch.no_grad():
        for _ in range(warmup):
            fn()
        timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=num_threads)
        times = []
        for _ in range(repeats):
            times.append(timer.timeit(1).median)
            if tick:
                tick()
    return statistics.median(times) * 1000.0


def time_forward(model: torch.nn.Module, x: torch.Tensor, repeats: int, warmup: int, num_threads: int,
                 tick: Callable[[], None] | None = None) -> float:
    """Median latency in milliseconds of ``model(x)``."""
    return time_call(lambda: model(x), repeats, warmup, num_threads, tick)


def count_flops_call(fn: Callable[[], object]) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def amortized_calls(model: torch.nn.Module, slice_shape: Sequence[int], device) -> tuple[Callable, Callable]:
    """(per-slice work on one slice, one window's rest from a cache) of a slice model in volume inference."""
    k = capabilities_of(model).slice_k
    x1 = torch.randn(1, *slice_shape, device=device)
    with torch.no_grad():
        cache = model.encode_slices(torch.randn(k, *slice_shape, device=device))
    index = torch.arange(k, device=device)[None]
    return (lambda: model.encode_slices(x1)), (lambda: model.decode_from_cache(cache, index))


def _pct(value, base):
    if value is None or base in (None, 0):
        return None
    return 100.0 * (value - base) / base


def measure_efficiency(network: str, modules: Sequence[str], *, num_classes: int, sizes: Sequence[int],
                       in_channels: int = 1, dim: int = 2, device: str = "cpu", repeats: int = 10, warmup: int = 2,
                       options: dict | None = None, num_threads: int | None = None, seed: int = 0,
                       positions: Sequence[str] = ("head",), level: int | None = None,
                       progress: Callable[[str, int, int], None] | None = None) -> list[dict]:
    """One record per (size, module, position): params, flops, macs, latency_ms, flops_amortized,
    latency_amortized_ms, input_shape and % increase over ``none``. Modules that are not slice modules have no
    position (``position`` None) and are measured once per size.

    ``options`` are routed as the grid routes them: a name a module declares (``features``, ``k``) goes only to the
    modules that declare it, every other name to every network (which refuses names it does not know).
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
    if not positions:
        raise ConfigError("give at least one module position")
    for p in positions:
        check_position_name(p)
    pairs = [(m, p if registry.get_module(m).kind == "slice" else None) for m in modules
             for p in (positions if registry.get_module(m).kind == "slice" else positions[:1])]
    num_threads = int(num_threads or torch.get_num_threads())
    # progress counts timed runs: `repeats` per latency, three latencies for a slice module (window, per slice,
    # rest of the window), plus one step for building the model and counting its FLOPs
    steps = {m: 1 + repeats * (3 if registry.get_module(m).kind == "slice" else 1) for m in modules}
    records, total, done = [], len(sizes) * sum(steps[m] for m, _ in pairs), 0

    def tick(n: int = 1) -> None:
        nonlocal done
        done += n
        if progress:
            progress("measuring efficiency", done, total)
    for s in sizes:
        size = (int(s),) * dim
        for module, position in pairs:
            start = done
            rec = {"network": network, "module": module, "position": position, "dim": dim, "size": list(size),
                   "device": device, "input_shape": None, "params": None, "flops": None, "macs": None,
                   "latency_ms": None, "flops_amortized": None, "latency_amortized_ms": None, "skipped": None}
            reason = registry.invalid_reason(network, module, dim) or _size_reason(entry, size)
            if reason is None:
                try:
                    rec.update(_measure_one(entry, network, module, size, num_classes, in_channels, dim, device,
                                            repeats, warmup, module_options(module, dict(options or {})),
                                            num_threads, seed, position,
                                            level if position == "skip" else None, tick))
                except SalsegError as e:
                    reason = str(e)
            if reason:
                log.warning("skipping %s + %s (%s) at %s: %s", network, module, position, size, reason)
                rec["skipped"] = reason
            records.append(rec)
            tick(max(0, start + steps[module] - done))  # the rest of this pair's steps (all of them when skipped)
    _add_increases(records)
    return records


def _measure_one(entry, network, module, size, num_classes, in_channels, dim, device, repeats, warmup, options,
                 num_threads, seed, position=None, level=None, tick=None) -> dict:
    if _accepts(entry.factory, "patch_size"):
        options.setdefault("patch_size", list(size))
    torch.manual_seed(seed)
    model = registry.build(network, module, in_channels=in_channels, num_classes=num_classes, dim=dim,
                           position=position or "head", level=level, **options).to(device).eval()
    caps = capabilities_of(model)
    is_slice, shape = caps.is_slice_model, caps.input_shape(in_channels, size)
    x = torch.randn(shape, device=device)
    rec = {"input_shape": list(shape), "params": count_params(model), "flops": (flops := count_flops(model, x))}
    if tick:
        tick()
    rec.update(macs=flops // 2, latency_ms=time_forward(model, x, repeats, warmup, num_threads, tick))
    if is_slice:
        per_slice, per_window = amortized_calls(model, shape[2:], device)
        rec["flops_amortized"] = count_flops_call(per_slice) + count_flops_call(per_window)
        rec["latency_amortized_ms"] = (time_call(per_slice, repeats, warmup, num_threads, tick)
                                       + time_call(per_window, repeats, warmup, num_threads, tick))
    else:
        rec["flops_amortized"], rec["latency_amortized_ms"] = rec["flops"], rec["latency_ms"]
    return rec


def _add_increases(records: list[dict]) -> None:
    base = {tuple(r["size"]): r for r in records if r["module"] == "none" and not r["skipped"]}
    for r in records:
        b = base.get(tuple(r["size"]), {})
        for key in ("params", "flops", "latency_ms", "flops_amortized", "latency_amortized_ms"):
            r[f"{key}_increase_pct"] = _pct(r[key], b.get(key))
