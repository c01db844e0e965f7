"""Exit codes, the same in every command: 0 success, 1 a run failed, 2 bad input or usage (docs/cli.md)."""

from __future__ import annotations

import pytest
import typer.main
from typer.testing import CliRunner

from salseg.errors import RunFailed
from salseg_cli.main import app

runner = CliRunner()


def _run(root, *args):
    res = runner.invoke(app, ["--root", str(root), *map(str, args)])
    text = res.output + (res.stderr if res.stderr_bytes else "")
    return res.exit_code, text


def _leaves(cmd, path=()):
    subs = getattr(cmd, "commands", None)
    if not subs:
        yield path
        return
    for name, sub in subs.items():
        yield from _leaves(sub, (*path, name))


LEAVES = list(_leaves(typer.main.get_command(app)))


@pytest.mark.parametrize("path", LEAVES, ids=[" ".join(p) for p in LEAVES])
def test_an_unknown_option_is_a_usage_error(tmp_path, path):
    code, text = _run(tmp_path, *path, "--no-such-option")
    assert code == 2, text
    assert "Traceback" not in text


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    code, text = _run(root, "synth", "--cases", 2)
    assert code == 0, text
    assert text.count("Dataset901_SynthACDC (") == 1  # the summary is printed once
    return root


BAD_INPUT = [
    ("synth", "--cases", "0"),
    ("check", "NoSuchDataset"),
    ("plan", "NoSuchDataset"),
    ("preprocess", "NoSuchDataset"),
    ("train", "NoSuchDataset", "-n", "unet"),
    ("train", "SynthACDC", "-n", "unet"),  # not planned
    ("train", "SynthACDC", "-n", "no-such-net"),
    ("predict", "NoSuchDataset", "-n", "unet", "-i", "in", "-o", "out"),
    ("evaluate", "no/pred", "no/ref"),
    ("stats", "only-one"),
    ("quickstart", "--minutes", "0.1"),
    ("bench", "run", "NoSuchDataset", "-n", "unet"),
    ("bench", "run", "SynthACDC", "-n", "unet", "-m", "reca"),  # every requested pair invalid
    ("bench", "efficiency", "-n", "no-such-net", "--classes", "2", "--sizes", "16"),
    ("bench", "efficiency", "-n", "unet", "-m", "reca", "--classes", "2", "--sizes", "16"),  # nothing measurable
    ("bench", "robustness", "no/such/fold"),
    ("convert", "folder"),
    ("convert", "acdc", "no/such/folder"),
    ("list", "no-such-kind"),
]


@pytest.mark.parametrize("args", BAD_INPUT, ids=[" ".join(a) for a in BAD_INPUT])
def test_bad_input_exits_2_with_one_message(synth_root, args):
    code, text = _run(synth_root, *args)
    assert code == 2, text
    assert "Traceback" not in text and text.strip()


def test_success_exits_0(synth_root):
    for args in (("check", "SynthACDC"), ("list", "networks"), ("list", "datasets"),
                 ("bench", "efficiency", "-n", "unet", "-m", "none", "--classes", "2", "--sizes", "16", "-r", "1",
                  "--option", "width=2")):
        code, text = _run(synth_root, *args)
        assert code == 0, (args, text)
    assert "Dataset901_SynthACDC: 2 training cases" in _run(synth_root, "list", "datasets")[1]


def test_a_failed_run_exits_1(synth_root, monkeypatch):
    import salseg.train

    def diverge(*args, **kwargs):
        raise RunFailed("training diverged: loss is nan at epoch 1, iteration 3")

    monkeypatch.setattr(salseg.train, "train", diverge)
    code, text = _run(synth_root, "train", "SynthACDC", "-n", "unet")
    assert code == 1, text
    assert "training diverged" in text and "Traceback" not in text


def test_the_network_is_an_argument_or_n_never_two_different(synth_root, monkeypatch):
    """`salseg train DATASET NETWORK` is the documented form: no warning; -n is the same; both, different: exit 2."""
    import salseg.train

    seen = []
    monkeypatch.setattr(salseg.train, "train", lambda root, settings, **k: seen.append(settings.network) or root)
    for args in (("SynthACDC", "mtunet", "--module", "lstmsa"), ("SynthACDC", "-n", "mtunet", "--module", "lstmsa"),
                 ("SynthACDC", "mtunet", "-n", "mtunet")):
        code, text = _run(synth_root, "train", *args)
        assert code == 0 and seen.pop() == "mtunet", text
        assert "warning" not in text.lower() and "deprecated" not in text, text
    code, text = _run(synth_root, "train", "SynthACDC")  # no network: the plans' own
    assert code == 0 and seen.pop() is None, text


@pytest.mark.parametrize("args", [("train", "SynthACDC", "unet", "-n", "mtunet"),
                                  ("predict", "SynthACDC", "unet", "-n", "mtunet", "-i", "in", "-o", "out"),
                                  ("bench", "efficiency", "unet", "-n", "mtunet", "--classes", "2", "--sizes", "16")])
def test_two_different_networks_exit_2_naming_both(synth_root, args):
    code, text = _run(synth_root, *args)
    assert code == 2, text
    assert "'unet'" in text and "-n 'mtunet'" in text and "Traceback" not in text


def test_predict_and_efficiency_take_the_network_as_an_argument(synth_root):
    code, text = _run(synth_root, "bench", "efficiency", "unet", "-m", "none", "--classes", "2", "--sizes", "16",
                      "-r", "1", "--option", "width=2")
    assert code == 0 and "unet efficiency" in text, text
    code, text = _run(synth_root, "predict", "SynthACDC", "-i", "in", "-o", "out")  # as train: the plans' network
    assert code == 2 and "missing the network" not in text and "unet__none__2d" in text, text
    code, text = _run(synth_root, "predict", "SynthACDC", "unet", "-i", "in", "-o", "out")
    assert code == 2 and "missing the network" not in text and "two networks" not in text, text
