"""What this installation can build, as records: the networks, the modules, the valid network x module pairs, the
slice-module positions and the network presets (``salseg list``; built-ins and entry-point plug-ins alike)."""

from __future__ import annotations

from salseg.nets import registry
from salseg.nets.capabilities import DEFAULT_POSITION, POSITIONS

POSITION_TEXT = {"head": "on the network's output features (the released SA-LSTM / LSTM-SA)",
                 "bottleneck": "on the deepest encoder level, added to the centre slice's features",
                 "skip": "on one skip connection's encoder level (--module-level; default the deepest skip)",
                 "parallel": "on the K input slices beside the encoder, added to the first encoder level"}


def _is_plugin(fn) -> bool:
    return fn is not None and not (fn.__module__ or "salseg.").startswith("salseg.")


def network_records() -> list[dict]:
    """One record per network: its dimensions, size rules and the modules valid with it in any dimension."""
    out = []
    for name, e in sorted(registry.networks().items()):
        valid = sorted({m for d in e.dims for m in registry.valid_modules(name, d)})
        out.append({"name": name, "kind": e.kind, "dims": list(e.dims), "fixed_size": e.fixed_size,
                    "divisor": e.divisor, "modules": valid, "plugin": _is_plugin(e.factory),
                    "description": e.description})
    return out


def module_records() -> list[dict]:
    """One record per module: its options and the networks it pairs with in at least one dimension."""
    nets = registry.networks()
    out = []
    for name, m in sorted(registry.modules().items()):
        pairs = sorted(n for n in nets if any(registry.invalid_reason(n, name, d) is None for d in nets[n].dims))
        out.append({"name": name, "kind": m.kind, "options": list(m.options), "networks": pairs,
                    "plugin": _is_plugin(m.build), "description": m.description})
    return out


def position_records() -> list[dict]:
    """Where a slice module can sit (``--module-position``)."""
    return [{"name": p, "default": p == DEFAULT_POSITION, "description": POSITION_TEXT.get(p, "")}
            for p in POSITIONS]


def network_preset_records() -> list[dict]:
    """The presets each network registered (``--option preset=NAME``)."""
    out = []
    for name, e in sorted(registry.networks().items()):
        for preset, values in e.presets.items():
            shown = ", ".join(f"{k}={v}" for k, v in values.items()) if isinstance(values, dict) else str(values)
            out.append({"name": preset, "network": name, "option": f"preset={preset}", "values": values,
                        "description": shown})
    return out
