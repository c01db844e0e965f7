"""Issue 29: what train/bench/predict say matches what they do. Every `--help` default of train and bench run is
compared with the value the resolution records in config.json (on a GPU and on a CPU); the "plans sized for
another network" warning states the patch and batch the run applies; a finished fold keeps weights only."""

from __future__ import annotations

import dataclasses
import re
from types import SimpleNamespace

import pytest
import typer.main

from salseg.plans import DEFAULT_NETWORK_HELP, read_plans
from salseg.train import TrainSettings
from salseg.train.budget import epochs_text
from salseg.train.config import help_defaults
from salseg.train.resolve import RunInputs, make_run_config, resolve_run_config
from salseg_cli.main import app

# option -> (config.json field, how to read it from the config dict)
FIELDS = {"--epochs": "epochs", "--iters-per-epoch": "iters_per_epoch", "--warmup-epochs": "warmup_epochs",
          "--optimizer": "optimizer", "--lr": "lr", "--batch-size": "batch_size", "--patch-size": "patch_size",
          "--val-every": "val_every", "--seed": "seed", "--width": "width"}


def _help(*path: str) -> dict[str, str]:
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return {opt: p.help for p in cmd.params for opt in p.opts if p.help}


def _number(text: str):
    text = text.strip(" .,;)")
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def _stated(help_text: str) -> tuple[object, object | None]:
    """(the default stated for a GPU run, the value stated for a CPU run) of one help text."""
    gpu = re.search(r"default (?:by optimizer \((\w+) ([\d.e-]+)|(\w[\w.-]*))", help_text)
    gpu_value = _number(gpu.group(2) or gpu.group(3)) if gpu else None
    cpu = re.search(r"on a CPU \([\w-]+ recipe\) (?:each axis )?(?:at most )?([\w.-]+)", help_text)
    return gpu_value, (_number(cpu.group(1)) if cpu else None)


def _recorded(cfg: dict, field: str):
    if field == "width":
        return cfg["options"].get("width")
    if field == "patch_size":
        return max(cfg["patch_size"])
    return cfg[field]


@pytest.mark.parametrize("command", [("train",), ("bench", "run")])
def test_every_help_default_is_what_config_json_records(tiny_root, command):
    helps = _help(*command)
    train_helps = _help("train")
    runs = {}
    for device in ("cpu", "cuda"):
        runs[device] = make_run_config(tiny_root, TrainSettings("Tiny", "unet"), SimpleNamespace(type=device), 1)
    checked = 0
    for opt, field in FIELDS.items():
        if opt not in helps:
            continue
        # train and bench run state them from the one function the resolution's constants feed
        assert help_defaults()[field] in helps[opt] and help_defaults()[field] in train_helps[opt], opt
        gpu, cpu = _stated(helps[opt])
        on_gpu, on_cpu = (_recorded(runs[d].to_dict(), field) for d in ("cuda", "cpu"))
        if field == "batch_size":   # "the plans'": Tiny's plans say 12; the CPU caps it at the stated 4
            assert on_gpu == read_plans(tiny_root / "preprocessed" / "Dataset901_Tiny" / "plans.json") \
                .configuration("2d").batch_size and on_cpu == cpu, (opt, helps[opt], on_gpu, on_cpu)
        elif field == "patch_size":  # Tiny's plans (32) are under the CPU cap (128 for 2D): kept on both
            assert on_gpu == on_cpu == 32 and cpu == 128 and "at most" in helps[opt]
        elif field == "width":       # unet on a GPU: the plans' features; on a CPU the stated width
            assert on_gpu is None and on_cpu == cpu, (opt, helps[opt], on_cpu)
        elif field == "val_every":   # "at most the epochs"
            assert on_gpu == gpu and on_cpu == min(gpu, runs["cpu"].epochs), (opt, helps[opt])
        else:
            assert on_gpu == gpu, (opt, helps[opt], on_gpu)
            if cpu is not None:
                assert on_cpu == cpu, (opt, helps[opt], on_cpu)
            else:
                assert on_cpu == gpu, (opt, helps[opt], on_cpu)
        checked += 1
    assert checked >= (10 if command == ("train",) else 6)
    assert "(cpu-adam recipe)" in helps["--epochs"] and runs["cpu"].cpu_defaults_applied["recipe"] == "cpu-adam"


def test_configuration_default_is_stated_alike():
    from salseg_cli.app import CONFIG_HELP

    for command in ("train", "predict", "validate", "export-model"):
        cmd = typer.main.get_command(app).commands[command]
        (config,) = [p for p in cmd.params if "--config" in p.opts]
        assert config.help == CONFIG_HELP and config.default is None, command


def test_network_default_is_stated_alike_and_predict_has_one():
    for command in ("train", "predict"):
        cmd = typer.main.get_command(app).commands[command]
        (arg,) = [p for p in cmd.params if p.name == "network"]
        assert DEFAULT_NETWORK_HELP in arg.help and not arg.required


def test_stats_labels_metavar():
    cmd = typer.main.get_command(app).commands["stats"]
    (labels,) = [p for p in cmd.params if "--labels" in p.opts]
    assert labels.metavar == "LABEL ..." and "--labels all 1 2" in labels.help


def test_plans_of_another_network_warning_states_the_applied_patch_and_batch(tiny_root):
    plans = read_plans(tiny_root / "preprocessed" / "Dataset901_Tiny" / "plans.json")
    plans = dataclasses.replace(plans, extra={**plans.extra, "network": "unet"})
    src = RunInputs(dataset="Dataset901_Tiny", network="mtunet", plans=plans,
                    configuration=plans.configuration("2d").to_dict(), recipe={"batch_size": 4}, fixed_size=(64, 64),
                    divisor=1, slice_module=False, file_ending=".nii.gz", device="cuda", world_size=1,
                    default_workers=0)
    cfg, notes = resolve_run_config(TrainSettings("Tiny", "mtunet"), src)
    (warning,) = [text for level, text in notes if "were sized for" in text]
    assert (cfg.patch_size, cfg.batch_size) == ([64, 64], 4)
    assert "training mtunet with patch 64x64 (mtunet's fixed input size; plans 32x32)" in warning, warning
    assert "batch 4 (the network's recipe; plans 12)" in warning, warning
    assert "their patch and batch size" not in warning


def test_epochs_grammar():
    assert (epochs_text(1), epochs_text(2), epochs_text(0)) == ("1 epoch", "2 epochs", "0 epochs")


def test_slice_module_config_defaults_to_2p5d_and_explicit_2d_is_refused(tiny_root):
    from typer.testing import CliRunner

    from salseg_cli.app import run_configuration

    assert [run_configuration(None, m) for m in ("none", "lstmsa", "stack")] == ["2d", "2.5d", "2.5d"]
    assert run_configuration("3d_fullres", "none") == "3d_fullres" and run_configuration("2d", "lstmsa") == "2d"
    res = CliRunner().invoke(app, ["--root", str(tiny_root), "train", "Tiny", "unet", "--module", "lstmsa", "-c", "2d",
                                   "--epochs", "1", "--device", "cpu", "-q"])
    text = " ".join((res.output + (res.stderr if res.stderr_bytes else "")).split())
    assert res.exit_code == 2 and "lstmsa is a slice module" in text, text
    assert "salseg train Tiny unet --module lstmsa -c 2.5d" in text, text
    assert not (tiny_root / "results").exists()
