"""``salseg list networks|modules|positions|datasets|presets``: what this installation knows, one line each."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from salseg_cli.app import app, console, fail, root_dir
from salseg_cli.tables import write_json_out

KINDS = ("networks", "modules", "positions", "datasets", "presets")


def _dims(dims) -> str:
    return "/".join(f"{d}D" for d in dims)


def network_records() -> list[dict]:
    from salseg.nets import registry

    out = []
    for name, e in sorted(registry.networks().items()):
        dims = e.dims
        valid = sorted({m for d in dims for m in registry.valid_modules(name, d)})
        out.append({"name": name, "kind": e.kind, "dims": list(dims), "fixed_size": e.fixed_size,
                    "divisor": e.divisor, "modules": valid, "plugin": not e.factory.__module__.startswith("salseg."),
                    "description": e.description})
    return out


def module_records() -> list[dict]:
    from salseg.nets import registry

    nets = registry.networks()
    out = []
    for name, m in sorted(registry.modules().items()):
        pairs = sorted(n for n in nets if any(registry.invalid_reason(n, name, d) is None for d in nets[n].dims))
        plugin = m.build is not None and not getattr(m.build, "__module__", "salseg.").startswith("salseg.")
        out.append({"name": name, "kind": m.kind, "options": list(m.options), "networks": pairs, "plugin": plugin,
                    "description": m.description})
    return out


def position_records() -> list[dict]:
    from salseg.nets.modules.positions import DEFAULT_POSITION, POSITIONS

    text = {"head": "on the network's output features (the released SA-LSTM / LSTM-SA)",
            "bottleneck": "on the deepest encoder level, added to the centre slice's features",
            "skip": "on one skip connection's encoder level (--module-level; default the deepest skip)",
            "parallel": "on the K input slices beside the encoder, added to the first encoder level"}
    return [{"name": p, "default": p == DEFAULT_POSITION, "description": text.get(p, "")} for p in POSITIONS]


def dataset_records(root: Path) -> list[dict]:
    from salseg.dataset.dataset_json import load_dataset_json
    from salseg.dataset.naming import list_datasets
    from salseg.results import plans_file, raw_dir

    out = []
    for name in list_datasets(root):
        rec = {"name": name, "planned": plans_file(root, name).is_file(), "cases": None, "labels": None}
        try:
            info = load_dataset_json(raw_dir(root, name))
            rec.update(cases=info.num_training, labels=info.labels)
        except Exception as e:  # a broken dataset.json is listed, not fatal (`salseg check` says what is wrong)
            rec["problem"] = str(e).splitlines()[0]
        out.append(rec)
    return out


def preset_records() -> list[dict]:
    """Planner presets (``plan --preset``), then network presets: the ``PRESETS`` table of each network's module
    (built-ins and plug-ins alike)."""
    from salseg.nets import registry
    from salseg.plan.presets import PRESETS as PLAN_PRESETS

    out = [{"name": p.name, "network": None, "option": f"plan --preset {p.name}", "plans_name": p.plans_name,
            "description": f"plans {p.plans_name!r} for {p.network}, {p.gpu_memory_gb:g} GB GPU "
                           f"(nnU-Net's {p.nnunet_planner})"} for p in PLAN_PRESETS.values()]
    for name, e in sorted(registry.networks().items()):
        presets = getattr(sys.modules.get(e.factory.__module__), "PRESETS", None)
        for preset, values in (presets or {}).items():
            shown = ", ".join(f"{k}={v}" for k, v in values.items()) if isinstance(values, dict) else str(values)
            out.append({"name": preset, "network": name, "option": f"preset={preset}", "values": values,
                        "description": shown})
    return out


def _lines(kind: str, records: list[dict]) -> list[str]:
    if kind == "networks":
        return [f"{r['name']}: {_dims(r['dims'])} {r['kind']}{' (plug-in)' if r['plugin'] else ''}; modules "
                f"{' '.join(r['modules'])} -- {r['description']}" for r in records]
    if kind == "modules":
        return [f"{r['name']}: {r['kind']}{' (plug-in)' if r['plugin'] else ''}; networks {' '.join(r['networks'])}"
                f"{'; options ' + ' '.join(r['options']) if r['options'] else ''} -- {r['description']}"
                for r in records]
    if kind == "positions":
        return [f"{r['name']}{' (default)' if r['default'] else ''}: {r['description']}" for r in records]
    if kind == "datasets":
        return [f"{r['name']}: " + (r["problem"] if "problem" in r else
                                    f"{r['cases']} training cases, labels "
                                    f"{', '.join(f'{v} {k}' for k, v in (r['labels'] or {}).items())}"
                                    f"{', planned' if r['planned'] else ', not planned yet'}") for r in records]
    return [f"{r['option']}: {r['description']}" if r["network"] is None else
            f"{r['network']} --option {r['option']}: {r['description']}" for r in records]


@app.command("list")
def list_command(
    what: Optional[str] = typer.Argument(None, help="networks, modules, positions, datasets or presets "
                                         "(default: all of them)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the records as JSON here."),
) -> None:
    """What is registered (networks and modules, entry-point plug-ins included), the valid network + module pairs,
    module positions, the datasets under the data root and the planner and network presets; one line each."""
    kinds = KINDS if what is None else (what,)
    if what is not None and what not in KINDS:
        fail(f"salseg list takes one of {', '.join(KINDS)}, got {what!r}")
    makers = {"networks": network_records, "modules": module_records, "positions": position_records,
              "datasets": lambda: dataset_records(root_dir()), "presets": preset_records}
    payload = {}
    for kind in kinds:
        records = makers[kind]()
        payload[kind] = records
        if len(kinds) > 1:
            console.print(f"[bold]{kind}[/bold]")
        for line in _lines(kind, records) or [f"(no {kind})"]:
            console.print(("  " if len(kinds) > 1 else "") + line, highlight=False, markup=False)
    write_json_out(json_out, payload if len(kinds) > 1 else payload[kinds[0]], console)
