"""``salseg bench efficiency``: parameters, FLOPs and latency per module (Table III of Ji, Ye, Ma, IEEE TIP 2024)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from salseg_cli.app import bench_app, console, err_console, fail, network_params, one_network, parse_options
from salseg_cli.progress import rich_progress
from salseg_cli.tables import Column, TableData, show


def _cell(value, pct, scale=1.0, digits=2) -> str:
    """The value, and its increase over 'none' on a second line (keeps the columns narrow)."""
    if value is None:
        return "-"
    text = f"{value / scale:,.{digits}f}"
    if pct is None:
        return text
    return f"{text}\n({pct:+.1f}%)" if abs(pct) < 100 else f"{text}\n({pct:+.0f}%)"


def efficiency_table(records: list[dict], repeats: int) -> TableData:
    first = records[0]
    # amortised columns when module positions are compared (they are always in the JSON records)
    amortised = any(r.get("position") not in (None, "head") for r in records)
    cols = [Column("Module"), Column("Size"), Column("Params (M)", "Params"), Column("GFLOPs", justify="right"),
            Column("GMACs", justify="right"), Column("Latency (ms)", "ms", "right")]
    if amortised:
        cols += [Column("GFLOPs/slice (vol.)", "GFLOPs/sl", "right"), Column("ms/slice (vol.)", "ms/sl", "right")]
    cols[2].justify = "right"
    table = TableData(
        title=f"{first['network']} efficiency ({first['dim']}D, {first['device']})", columns=cols,
        caption=f"FLOPs = 2 x MACs (torch.utils.flop_counter: conv/matmul only). Latency: median of {repeats} "
                f"runs after warm-up, batch 1, eval, no_grad. (+%) over 'none' at the same size. K = neighbouring "
                f"slices per training sample."
                + (" '/slice (vol.)': per predicted slice in volume inference (per-slice features computed once, "
                   "reused by the neighbours)." if amortised else ""))
    for r in records:
        if r["skipped"]:
            continue
        slices = len(r["input_shape"]) - len(r["size"]) == 3  # (1, K, C, *size): K slices per sample
        where = [f"@{r['position']}"] if r.get("position") not in (None, "head") else []
        where += [f"K={r['input_shape'][1]}"] if slices else []
        module = "\n".join([r["module"], *where])
        row = [module, "x".join(map(str, r["size"])),
               _cell(r["params"], r["params_increase_pct"], 1e6), _cell(r["flops"], r["flops_increase_pct"], 1e9),
               _cell(r["macs"], None, 1e9), _cell(r["latency_ms"], r["latency_ms_increase_pct"], 1.0, 1)]
        if amortised:
            row += [_cell(r["flops_amortized"], r["flops_amortized_increase_pct"], 1e9),
                    _cell(r["latency_amortized_ms"], r["latency_amortized_ms_increase_pct"], 1.0, 1)]
        table.add_row(*row)
    return table


NETWORK, NETWORK_OPTION = network_params("Network name; `salseg list networks`.")


@bench_app.command("efficiency", aliases={"--module": "--modules", "--size": "--sizes",
                                          "--positions": "--module-positions", "--position": "--module-positions",
                                          "--module-position": "--module-positions"},
                   deprecated_aliases={"-o": "--option", "-c": "--classes"})
def efficiency(
    network: Optional[str] = NETWORK,
    network_option: Optional[str] = NETWORK_OPTION,
    modules: List[str] = typer.Option(["none", "salstm", "lstmsa"], "--modules", "-m",
                                      help="Modules, space-separated: --modules none salstm lstmsa; "
                                           "`salseg list modules`."),
    classes: int = typer.Option(..., "--classes", help="Number of output classes."),
    size: List[int] = typer.Option(..., "--sizes", "-s", help="Input sizes (per spatial axis), e.g. --sizes 224 256."),
    in_channels: int = typer.Option(1, "--in-channels", help="Input channels."),
    dim: int = typer.Option(2, "--dim", help="2 or 3."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    repeats: Optional[int] = typer.Option(None, "--repeats", "-r", min=1,
                                          help="Timed forward passes per measurement, median reported "
                                               "(default 10 on GPU, 3 on CPU)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads while timing (default: torch's)."),
    option: List[str] = typer.Option([], "--option", help="Network/module options KEY=VALUE, space-separated, "
                                     "e.g. scale=paper."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the records as a JSON list here."),
    positions: List[str] = typer.Option(["head"], "--module-positions",
                                        help="Slice-module positions, space-separated: head bottleneck skip parallel; "
                                             "`salseg list positions`."),
    level: Optional[int] = typer.Option(None, "--module-level",
                                        help="Encoder level of the 'skip' position (default: the deepest skip)."),
) -> None:
    """Parameters, FLOPs and latency of NETWORK with each module, and the increase over 'none':
    salseg bench efficiency mtunet --modules none lstmsa --classes 4 --sizes 224.

    The measurement of Table III of Ji, Ye, Ma (IEEE TIP 2024, SA-LSTM / LSTM-SA), on this machine.
    """
    from salseg.bench.efficiency import measure_efficiency

    network = one_network(network, network_option)
    if dim not in (2, 3):
        fail(f"--dim must be 2 or 3, got {dim}")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        fail(f"--device must be cpu or cuda, got {device!r}")
    warmup = 2
    if repeats is None:
        repeats, warmup = (10, 2) if device.startswith("cuda") else (3, 1)
        err_console.print(f"timing {repeats} run(s) per measurement after {warmup} warm-up run(s) on {device} "
                          f"(--repeats to change)", highlight=False)
    with rich_progress() as progress:
        records = measure_efficiency(network, modules, num_classes=classes, sizes=size, in_channels=in_channels,
                                     dim=dim, device=device, repeats=repeats, warmup=warmup,
                                     options=parse_options(option), num_threads=threads, positions=positions,
                                     level=level, progress=progress)
    for r in records:
        if r["skipped"]:
            where = f" ({r['position']})" if r.get("position") else ""
            err_console.print(f"[yellow]skipped[/yellow] {r['network']} + {r['module']}{where} at "
                              f"{'x'.join(map(str, r['size']))}: {r['skipped']}", highlight=False)
    if all(r["skipped"] for r in records):
        fail("none of the requested combinations can be measured (see the reasons above; `salseg list modules` "
             "shows the valid pairs)")
    show(efficiency_table(records, repeats), console, json_out, records)
