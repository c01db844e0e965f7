"""``salseg list networks|modules|positions|datasets|presets``: what this installation knows, one line each."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from salseg.plan.catalogue import KINDS, records
from salseg_cli.app import app, console, root_dir
from salseg_cli.tables import print_wrapped, write_json_out


def _dims(dims) -> str:
    return "/".join(f"{d}D" for d in dims)


def _lines(kind: str, recs: list[dict]) -> list[str]:
    if kind == "networks":
        return [f"{r['name']}: {_dims(r['dims'])} {r['kind']}{' (plug-in)' if r['plugin'] else ''}; modules "
                f"{' '.join(r['modules'])} -- {r['description']}" for r in recs]
    if kind == "modules":
        return [f"{r['name']}: {r['kind']}{' (plug-in)' if r['plugin'] else ''}; networks {' '.join(r['networks'])}"
                f"{'; options ' + ' '.join(r['options']) if r['options'] else ''} -- {r['description']}"
                for r in recs]
    if kind == "positions":
        return [f"{r['name']}{' (default)' if r['default'] else ''}: {r['description']}" for r in recs]
    if kind == "datasets":
        return [f"{r['name']}: " + (r["problem"] if "problem" in r else
                                    f"{r['cases']} training cases, labels "
                                    f"{', '.join(f'{v} {k}' for k, v in (r['labels'] or {}).items())}"
                                    f"{', planned' if r['planned'] else ', not planned yet'}") for r in recs]
    return [f"{r['option']}: {r['description']}" if r["network"] is None else
            f"{r['network']} --option {r['option']}: {r['description']}" for r in recs]


@app.command("list")
def list_command(
    what: Optional[str] = typer.Argument(None, help="networks, modules, positions, datasets or presets "
                                         "(default: all of them)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the records as JSON here."),
) -> None:
    """What is registered (networks and modules, entry-point plug-ins included), the valid network + module pairs,
    module positions, the datasets under the data root and the planner and network presets; one record each
    (continuation lines indented)."""
    kinds = KINDS if what is None else (what,)
    payload = {}
    for kind in kinds:
        payload[kind] = records(kind, root_dir())
        if len(kinds) > 1:
            console.print(f"[bold]{kind}[/bold]")
        for line in _lines(kind, payload[kind]) or [f"(no {kind})"]:
            print_wrapped(console, line, first="  " if len(kinds) > 1 else "")
    write_json_out(json_out, payload if len(kinds) > 1 else payload[kinds[0]], console)
