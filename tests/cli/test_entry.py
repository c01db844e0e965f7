"""The ``salseg`` executable imports only the command it runs (salseg_cli.entry): every command is found, and a
light command does not pay for torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from salseg_cli.app import bench_app
from salseg_cli.entry import command_modules, command_name, modules_for
from salseg_cli.main import app


def _registered():
    """(command line words, module that registers it) for every command of the whole app."""
    out = [((c.name or c.callback.__name__,), c.callback.__module__) for c in app.registered_commands]
    out += [(("bench", c.name or c.callback.__name__), c.callback.__module__) for c in bench_app.registered_commands]
    for g in app.registered_groups:
        if g.name != "bench":
            out += [((g.name, c.name), c.callback.__module__) for c in g.typer_instance.registered_commands]
    return out


@pytest.mark.parametrize("words, module", _registered(), ids=lambda v: " ".join(v) if isinstance(v, tuple) else v)
def test_every_command_is_found_by_its_name(words, module):
    picked = modules_for([*words, "--help"])
    assert module.rsplit(".", 1)[1] in picked
    assert len(picked) < len(command_modules())  # only its own module(s), not all


@pytest.mark.parametrize("argv, name", [
    (["predict", "-i", "x"], "predict"), (["--root", "/r", "train", "ACDC"], "train"), (["--root=/r", "plan"], "plan"),
    (["-v", "export-model"], "export-model"), (["--help"], None), ([], None), (["--", "stats"], "stats")])
def test_command_name_skips_the_global_options(argv, name):
    assert command_name(argv) == name


def test_top_level_help_and_unknown_commands_load_all():
    assert modules_for(["--help"]) == command_modules()
    assert modules_for(["predcit"]) == command_modules()


def _run(*argv):
    code = ("import runpy, sys\n"
            f"sys.argv = ['salseg', *{list(argv)!r}]\n"
            "try:\n    runpy.run_module('salseg_cli', run_name='__main__')\n"
            "except SystemExit as e:\n    code = e.code\n"
            "print('TORCH', 'torch' in sys.modules, 'EXIT', code)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_a_light_command_does_not_import_torch():
    r = _run("predict", "--help")
    assert "--model" in r.stdout and "TORCH False EXIT 0" in r.stdout


def test_the_executable_lists_every_command_and_suggests_on_a_typo():
    r = _run("--help")
    for name in ("export-model", "quickstart", "bench", "find-best", "postprocess", "convert"):
        assert name in r.stdout
    r = _run("predcit")
    assert "EXIT 2" in r.stdout and "No such command" in r.stderr
