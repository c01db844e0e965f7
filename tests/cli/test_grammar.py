"""The CLI grammar of docs/cli.md, checked on every command's parameters (options added later are checked too)."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest
import typer.main
from typer.testing import CliRunner

from salseg_cli.app import ARGUMENT, SalsegCommand, expand_multi_values, rewrite_aliases
from salseg_cli.main import app

ROOT = typer.main.get_command(app)
# the options whose values are written to disk: what `-o` may mean
OUTPUT_NAMES = {"output", "json_out", "csv_out", "out"}


def _walk(cmd, path=("salseg",)):
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _walk(sub, (*path, name))


COMMANDS = [(" ".join(p), c) for p, c in _walk(ROOT)]
LEAVES = [(p, c) for p, c in COMMANDS if not hasattr(c, "commands")]


def _options(cmd):
    return [p for p in cmd.params if p.param_type_name == "option"]


def _concept(param) -> str:
    """The word an option stands for: its long name without a plural s (--modules and --module are one concept)."""
    long = next(o for o in param.opts if o.startswith("--"))
    return long[2:].rstrip("s")


def test_every_command_is_a_salseg_command():
    for path, cmd in LEAVES:
        assert isinstance(cmd, SalsegCommand), f"{path}: register it with app.command() of salseg_cli.app"


def test_a_short_flag_means_one_thing_everywhere():
    meanings = defaultdict(set)
    for path, cmd in COMMANDS:
        for p in _options(cmd):
            for short in (o for o in p.opts + p.secondary_opts if re.fullmatch(r"-[^-]", o)):
                meanings[short].add(_concept(p))
    bad = {s: sorted(m) for s, m in meanings.items() if len(m) > 1}
    assert not bad, f"short flags with several meanings: {bad}"


def test_o_is_an_output_j_is_jobs_and_workers_are_data_loading():
    for path, cmd in COMMANDS:
        for p in _options(cmd):
            if "-o" in p.opts:
                assert p.name in OUTPUT_NAMES, f"{path}: -o is {p.opts}, not an output"
            if "-j" in p.opts or "--jobs" in p.opts:
                assert sorted(p.opts) == ["--jobs", "-j"], f"{path}: processes are -j/--jobs, got {p.opts}"
            if "--workers" in p.opts:
                assert "data-loading" in (p.help or "").lower(), f"{path}: --workers is for data-loading workers"
            assert not {"--processes", "--num-workers", "--threads-per-job"} & set(p.opts), f"{path}: {p.opts}"


def test_no_alias_list_longer_than_one_visible_alias():
    for path, cmd in COMMANDS:
        for p in _options(cmd):
            longs = [o for o in p.opts if o.startswith("--")]
            shorts = [o for o in p.opts if not o.startswith("--")]
            assert len(longs) == 1 and len(shorts) <= 1, f"{path}: {p.opts} (keep old spellings as hidden aliases)"


def test_flags_show_no_bool_metavar():
    runner = CliRunner()
    for path, cmd in COMMANDS:
        ctx = cmd.make_context(path, [], resilient_parsing=True)
        for p in cmd.get_params(ctx):
            if getattr(p, "is_flag", False):
                assert not p.display_type_rich(ctx), f"{path}: flag {p.opts} shows {p.display_type_rich(ctx)!r}"
        res = runner.invoke(app, [*path.split()[1:], "--help"], env={"COLUMNS": "80"})
        assert res.exit_code == 0, res.output
        assert "<bool>" not in res.output, f"{path} --help shows <bool>"


def test_dataset_is_the_first_argument_then_the_network_or_n():
    """DATASET first; a command that names one network takes it as the next argument or as -n (docs/cli.md)."""
    for path, cmd in LEAVES:
        args = [p for p in cmd.params if p.param_type_name == "argument" and not p.hidden]
        for p in cmd.params:
            if p.name == "dataset":
                assert p.param_type_name == "argument" and args[0] is p, f"{path}: DATASET is the first argument"
            if p.name == "network":
                after = 1 if args and args[0].name == "dataset" else 0
                assert p.param_type_name == "argument" and args[after] is p, f"{path}: NETWORK follows DATASET"
                assert any(q.opts == ["--network", "-n"] for q in cmd.params), f"{path}: -n/--network too"
            if p.name == "networks":
                assert p.param_type_name == "option" and "-n" in p.opts, f"{path}: the networks are -n/--networks"
            if p.name in ("module", "modules"):
                assert "-m" in p.opts, f"{path}: the module is -m/--module"


def test_every_list_option_takes_space_separated_values():
    for path, cmd in LEAVES:
        multi = cmd.multi_value_options()
        for p in _options(cmd):
            if p.multiple:
                assert set(p.opts) <= set(multi), path
                name = p.opts[0]
                assert expand_multi_values([name, "a", "b", "--x"], multi) == [name, "a", name, "b", "--x"]


# options that take several values yet read as one thing: KEY=VALUE pairs, noise levels, one patch size
SINGULAR_MULTI = {"--option", "--noise", "--patch-size"}


def test_options_that_take_several_values_have_plural_names():
    for path, cmd in LEAVES:
        for p in _options(cmd):
            long = next(o for o in p.opts if o.startswith("--"))
            if p.multiple and long not in SINGULAR_MULTI:
                assert long.endswith("s"), f"{path}: {long} takes several values; name it in the plural"
                singular = long[:-1]
                assert cmd.aliases.get(singular) == long or singular not in {
                    o for q in cmd.params for o in q.opts}, f"{path}: {singular} means something else here"


def test_hidden_aliases_point_to_options_of_their_command():
    for path, cmd in LEAVES:
        visible = {o for p in cmd.params for o in p.opts + p.secondary_opts}
        for old, new in cmd.aliases.items():
            assert old not in visible, f"{path}: alias {old} shadows a visible option"
            assert new == ARGUMENT or new in visible, f"{path}: alias {old} -> {new}, which is not an option"
            if re.fullmatch(r"-[^-]", old):
                assert old in cmd.deprecated_aliases, f"{path}: a short alias ({old}) must be a deprecated one"
        assert set(cmd.deprecated_aliases) <= set(cmd.aliases)


def test_every_parameter_has_help():
    for path, cmd in COMMANDS:
        assert (cmd.help or "").strip(), f"{path} has no help"
        for p in cmd.params:
            assert p.hidden or (getattr(p, "help", "") or "").strip(), f"{path}: {p.name} has no help"


def test_help_points_to_real_places():
    for path, cmd in COMMANDS:
        texts = [cmd.help or ""] + [getattr(p, "help", "") or "" for p in cmd.params]
        for t in texts:
            assert "see the registry" not in t and "bench` lists" not in t, f"{path}: {t}"
            if re.search(r"\bTable [IVX]+\b", t):
                assert "Ji, Ye, Ma" in t or "Ji et al" in t, f"{path}: name the paper of {t!r}"


def test_rewrite_aliases_forms(capsys):
    aliases = {"--workers": "--jobs", "-n": "--cases", "-d": ARGUMENT}
    assert rewrite_aliases(["--workers", "3", "x"], aliases) == ["--jobs", "3", "x"]
    assert rewrite_aliases(["--workers=3"], aliases) == ["--jobs=3"]
    assert rewrite_aliases(["-n4"], aliases) == ["--cases=4"]
    assert rewrite_aliases(["-i", "a", "-d", "DS", "-o", "b"], aliases) == ["DS", "-i", "a", "-o", "b"]
    assert rewrite_aliases(["--", "--workers"], aliases) == ["--", "--workers"]
    rewrite_aliases(["-n", "4"], aliases, deprecated={"-n"}, where="salseg synth")
    err = capsys.readouterr().err
    assert "-n is deprecated" in err and "--cases" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("old,new", [(["check", "X", "--workers", "2"], ["check", "X", "-j", "2"]),
                                     (["synth", "-n", "0"], ["synth", "--cases", "0"])])
def test_deprecated_spellings_still_work(tmp_path, old, new):
    runner = CliRunner()
    a = runner.invoke(app, ["--root", str(tmp_path), *old])
    b = runner.invoke(app, ["--root", str(tmp_path), *new])
    out_a, out_b = (r.output + (r.stderr if r.stderr_bytes else "") for r in (a, b))
    assert a.exit_code == b.exit_code == 2, (out_a, out_b)  # the same (bad input) outcome
    assert "is deprecated" in out_a and "is deprecated" not in out_b


TABLE_COMMANDS = ["salseg plan", "salseg evaluate", "salseg stats", "salseg quickstart", "salseg list",
                  "salseg bench efficiency", "salseg bench robustness", "salseg bench run"]


def test_every_table_command_writes_json():
    by_path = dict(COMMANDS)
    for path in TABLE_COMMANDS:
        assert any("--json" in p.opts for p in by_path[path].params), f"{path} prints a table but has no --json"


def test_docs_cli_md_is_current():
    """docs/cli.md's generated part is the CLI as it is (regenerate: python -m salseg_cli.reference docs/cli.md)."""
    from pathlib import Path

    from salseg_cli.reference import MARKER, generate

    text = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    assert MARKER in text and text.index("## The grammar") < text.index(MARKER)
    assert text.split(MARKER)[1] == generate(app).split(MARKER)[1], \
        "docs/cli.md is out of date: python -m salseg_cli.reference docs/cli.md"
