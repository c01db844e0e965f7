"""``salseg bench efficiency``: parameters, FLOPs and latency per module (the paper's Table III)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from salseg.fileio import write_json
from salseg_cli.app import bench_app, console, err_console, fail, multi_value_command, parse_options
from salseg_cli.progress import rich_progress


def _cell(value, pct, scale=1.0, digits=2) -> str:
    if value is None:
        return "-"
    text = f"{value / scale:,.{digits}f}"
    if pct is None:
        return text
    return f"{text} ({pct:+.1f}%)" if abs(pct) < 100 else f"{text} ({pct:+.0f}%)"


def efficiency_table(records: list[dict], repeats: int) -> Table:
    first = records[0]
    table = Table(title=f"{first['network']} efficiency ({first['dim']}D, {first['device']})",
                  caption=f"FLOPs = 2 x MACs (torch.utils.flop_counter: conv/matmul only). Latency: median of "
                          f"{repeats} runs after warm-up, batch 1, eval, no_grad. (+%) over 'none' at the same size. "
                          f"K = neighbouring slices per training sample. '/slice (vol.)': per predicted slice in "
                          f"volume inference (per-slice features computed once, reused by the neighbours).")
    # amortised columns when module positions are compared (they are always in the JSON records)
    amortised = any(r.get("position") not in (None, "head") for r in records)
    cols = ["Module", "Size", "Params (M)", "GFLOPs", "GMACs", "Latency (ms)"]
    cols += ["GFLOPs/slice (vol.)", "ms/slice (vol.)"] if amortised else []
    for col in cols:
        table.add_column(col, justify="left" if col in ("Module", "Size") else "right", no_wrap=True)
    for r in records:
        if r["skipped"]:
            continue
        slices = len(r["input_shape"]) - len(r["size"]) == 3  # (1, K, C, *size): K slices per sample
        module = r["module"] if r.get("position") in (None, "head") else f"{r['module']}@{r['position']}"
        module = f"{module} (K={r['input_shape'][1]})" if slices else module
        row = [module, "x".join(map(str, r["size"])),
               _cell(r["params"], r["params_increase_pct"], 1e6), _cell(r["flops"], r["flops_increase_pct"], 1e9),
               _cell(r["macs"], None, 1e9), _cell(r["latency_ms"], r["latency_ms_increase_pct"], 1.0, 1)]
        if amortised:
            row += [_cell(r["flops_amortized"], r["flops_amortized_increase_pct"], 1e9),
                    _cell(r["latency_amortized_ms"], r["latency_amortized_ms_increase_pct"], 1.0, 1)]
        table.add_row(*row)
    return table


@bench_app.command("efficiency", cls=multi_value_command("--modules", "--module", "-m", "--size", "-s",
                                                          "--module-position", "--position", "--positions"))
def efficiency(
    network: str = typer.Option(..., "--network", "-n", help="Network name (see the registry)."),
    modules: List[str] = typer.Option(["none", "salstm", "lstmsa"], "--modules", "--module", "-m",
                                      help="Modules, space-separated or repeated: --modules none salstm lstmsa."),
    classes: int = typer.Option(..., "--classes", "-c", help="Number of output classes."),
    size: List[int] = typer.Option(..., "--size", "-s", help="Input size(s) per spatial axis, e.g. --size 224 256."),
    in_channels: int = typer.Option(1, "--in-channels", help="Input channels."),
    dim: int = typer.Option(2, "--dim", help="2 or 3."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    repeats: int = typer.Option(10, "--repeats", "-r", help="Timed forward passes (median is reported)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads while timing (default: torch's)."),
    option: List[str] = typer.Option([], "--option", "-o", help="Network/module option KEY=VALUE, e.g. scale=paper."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the records as a JSON list here."),
    positions: List[str] = typer.Option(["head"], "--module-position", "--position", "--positions",
                                        help="Slice-module position(s): head bottleneck skip parallel."),
    level: Optional[int] = typer.Option(None, "--module-level",
                                        help="Encoder level of the 'skip' position (default: the deepest skip)."),
) -> None:
    """Parameters, FLOPs and latency of NETWORK with each module, and the increase over 'none' (Table III)."""
    from salseg.bench.efficiency import measure_efficiency

    if dim not in (2, 3):
        fail(f"--dim must be 2 or 3, got {dim}")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        fail(f"--device must be cpu or cuda, got {device!r}")
    with rich_progress() as progress:
        records = measure_efficiency(network, modules, num_classes=classes, sizes=size, in_channels=in_channels,
                                     dim=dim, device=device, repeats=repeats, options=parse_options(option),
                                     num_threads=threads, positions=positions, level=level, progress=progress)
    if any(not r["skipped"] for r in records):
        console.print(efficiency_table(records, repeats))
    for r in records:
        if r["skipped"]:
            where = f" ({r['position']})" if r.get("position") else ""
            err_console.print(f"[yellow]skipped[/yellow] {r['network']} + {r['module']}{where} at "
                              f"{'x'.join(map(str, r['size']))}: {r['skipped']}", highlight=False)
    if json_out is not None:
        write_json(json_out, records)
        console.print(f"records written to {json_out}")
