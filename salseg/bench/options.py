"""How a grid's ``-o KEY=VALUE`` options reach each combination (shared by the grid runner and bench efficiency)."""

from __future__ import annotations


def module_options(module: str, options: dict) -> dict:
    """The grid's options for one combination: an option that some module declares (e.g. ``features`` of the
    slice heads, ``k`` of stack) goes only to the modules that declare it; every other option goes to every
    combination."""
    from salseg.nets import registry

    declared = {k for m in registry.modules().values() for k in m.options}
    own = set(registry.get_module(module).options)
    return {k: v for k, v in options.items() if k not in declared or k in own}
