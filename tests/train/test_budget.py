"""Time budgets: the duration parser, the warm-up + poly schedule that ends at the fitted epoch, the fitting rule,
tiny budgeted runs (library, CLI, a grid) and the CPU recipe as config.json records it."""

from __future__ import annotations

import json
import logging
import time

import pytest
import torch
from typer.testing import CliRunner

from salseg.errors import ConfigError
from salseg.run import RunConfig
from salseg.train import TrainSettings, train
from salseg.train.budget import (BudgetClock, PolySchedule, fit_total_epochs, format_duration, load_scheduler_state,
                                 make_scheduler, parse_duration, set_total, validations_between)
from salseg.train.cpu_defaults import CPU_RECIPE
from salseg_cli.main import app

from tests.train.conftest import TINY


def _records(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------------------------------- parser
@pytest.mark.parametrize("text, seconds", [("90s", 90), ("10m", 600), ("1h", 3600), ("1h30m", 5400),
                                           ("1m30s", 90), ("2.5m", 150), (" 1H 5S ", 3605), ("0.5s", 0.5)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize("text, why", [("90", "a unit is required"), ("", "empty"), ("10x", "cannot read"),
                                       ("m10", "cannot read"), ("1m1h", "reorders"), ("5m5m", "repeats"),
                                       ("0s", "not a positive"), ("-5m", "cannot read"), ("10 min", "cannot read"),
                                       ("1h30", "cannot read")])
def test_parse_duration_rejects(text, why):
    with pytest.raises(ConfigError, match=why) as e:
        parse_duration(text)
    assert "--time-budget" in str(e.value) and "\n" not in str(e.value)


def test_format_duration():
    assert [format_duration(s) for s in (5400, 90, 600, 2.5, 3605)] == ["1h30m", "1m30s", "10m", "2.5s", "1h5s"]


def test_cli_bad_budget_exits_2(tiny_root):
    for cmd in (["train", "Tiny", "unet"], ["bench", "run", "Tiny", "--networks", "unet"]):
        res = CliRunner().invoke(app, ["--root", str(tiny_root), *cmd, "--time-budget", "10", "--device", "cpu"])
        assert res.exit_code == 2, res.output
        assert "--time-budget" in res.output and "a unit is required" in res.output
        assert not (tiny_root / "results").exists()


# --------------------------------------------------------------------------------------------------- schedule
def _lrs(sched, opt, epochs, move_end=None):
    """The lr of each epoch; ``move_end=(e, total)``: after epoch e the budget moves the end (as the trainer does,
    before the scheduler steps)."""
    out = []
    for e in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if move_end and e == move_end[0]:
            set_total(sched, move_end[1])
        sched.step()
    return out


def test_schedule_without_warmup_is_nnunet_poly():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    lrs = _lrs(make_scheduler(opt, 10), opt, 10)
    assert lrs == pytest.approx([0.01 * (1 - e / 10) ** 0.9 for e in range(10)])  # hand formula
    ref_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    ref = torch.optim.lr_scheduler.PolynomialLR(ref_opt, total_iters=10, power=0.9)
    assert lrs == pytest.approx(_lrs(ref, ref_opt, 10))


def test_schedule_warmup_and_moved_end_never_trains_at_zero():
    f = PolySchedule(total=10, warmup=3)
    assert [f(e) for e in range(3)] == pytest.approx([1 / 4, 2 / 4, 3 / 4])
    assert [f(e) for e in range(3, 10)] == pytest.approx([(1 - k / 7) ** 0.9 for k in range(7)])
    assert f(9) > 0 and f(10) == 0
    assert PolySchedule(total=2, warmup=5).effective_warmup() == 1  # at least one epoch of decay
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = make_scheduler(opt, 100, warmup=1)
    lrs = _lrs(sched, opt, 6, move_end=(3, 6))  # after the 4th epoch a budget fits 6 in all
    expect = [1e-3 * PolySchedule(100, 1)(e) for e in range(4)] + [1e-3 * PolySchedule(6, 1)(e) for e in (4, 5)]
    assert lrs == pytest.approx(expect) and lrs[-1] > 0
    # the moved end travels with the state dict (--continue), and an old PolynomialLR state resumes the same decay
    again = make_scheduler(torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3), 100, warmup=1)
    again.load_state_dict(sched.state_dict())
    assert again.lr_lambdas[0].total == 6 and again.last_epoch == 6
    old_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    old = torch.optim.lr_scheduler.PolynomialLR(old_opt, total_iters=8, power=0.9)
    _lrs(old, old_opt, 3)
    new_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    new = make_scheduler(new_opt, 99)
    load_scheduler_state(new, old.state_dict())
    new_opt.step()
    new.step()
    old.step()
    assert new.get_last_lr() == pytest.approx(old.get_last_lr())


# --------------------------------------------------------------------------------------------------- fitting rule
def test_fit_rule_by_hand():
    kw = dict(limit=None, val_every=100, val_seconds=0.0)
    assert fit_total_epochs(current=1, budget=60, elapsed=10, epoch_seconds=10, **kw) == 6
    assert fit_total_epochs(current=2, budget=60, elapsed=20, epoch_seconds=10, **{**kw, "limit": 4}) == 4
    assert fit_total_epochs(current=3, budget=60, elapsed=300, epoch_seconds=100, **kw) == 3  # never fewer
    # validations after epochs 2, 4 (every 2) cost 5 s each; the closing one after the last epoch is free:
    # total 5 -> 4 epochs x 10 s + validations after 2 and 4 = 50 <= 50 left; total 6 -> 50 + 10 = 60 > 50
    assert fit_total_epochs(current=1, budget=60, elapsed=10, epoch_seconds=10, limit=None, val_every=2,
                            val_seconds=5.0) == 5
    assert validations_between(1, 4, 2) == 2 and validations_between(3, 3, 2) == 0 and validations_between(5, 4, 1) == 0
    clock = BudgetClock(budget=60, limit=None, val_every=2)
    clock.add_validation(5.0)
    assert clock.epoch_seconds(current=2, session_seconds=25.0) == 10.0
    assert clock.sparser_val_every(current=2, session_seconds=25.0) == 5  # 5 s of validation per >= 50 s of training


# --------------------------------------------------------------------------------------------------- tiny runs
def test_budgeted_run_ends_within_budget_and_records_its_choices(tiny_root):
    """No --epochs: the budget alone decides; the run ends within budget + the closing validation, and config.json
    records the budget and the epochs chosen; the lr falls every epoch and the last one is not 0."""
    import matplotlib.pyplot  # noqa: F401  (a first import inside epoch 1 would take seconds of a tiny budget)

    budget, ends = 5.0, []

    def slow(epoch, record):  # every epoch takes >= 0.4 s, so up to ~11 fit (fewer on a busy machine)
        time.sleep(0.4)
        ends.append(time.perf_counter())

    t0 = time.perf_counter()
    out = train(tiny_root, TrainSettings("Tiny", "unet", fold=1, **{**TINY, "epochs": None}, time_budget=budget,
                                         warmup_epochs=0), epoch_hook=slow)  # no warm-up: the lr falls at once
    wall = time.perf_counter() - t0
    recs = _records(out)
    cfg = RunConfig.load(out / "config.json")
    assert cfg.time_budget == budget and cfg.epochs_planned is None
    assert cfg.epochs_chosen == cfg.epochs == len(recs) >= 2, [r["epoch_time"] for r in recs]
    # the loop's time, without the set-up before it: each epoch's logged time + what follows it (checkpoints, plot,
    # the hook), the latter measured between the ends of consecutive epochs
    walls = [b - a for a, b in zip(ends, ends[1:])]
    after = sum(w - r["epoch_time"] for w, r in zip(walls, recs[1:])) / len(walls)
    loop = sum(r["epoch_time"] for r in recs) + len(recs) * after
    # epochs + periodic validations <= budget + one epoch of misestimate
    assert loop <= budget + max(walls) + 0.5, (walls, recs)  # 0.5 s: a busy machine
    # and the budget was used, but for the closing validation's estimate, which is set aside inside it
    assert loop >= budget - max(walls) - cfg.closing_validation["estimated_seconds"]
    lrs = [r["lr"] for r in recs]
    assert all(a > b > 0 for a, b in zip(lrs, lrs[1:]))
    # the last epoch is scored once, by the closing validation (no in-training duplicate after it)
    assert "mean_fg_dice" not in recs[-1] and recs[-1]["validation"] == "closing", recs[-1]
    assert (out / "checkpoint_final.pt").is_file()
    assert (out / "validation" / "summary.json").is_file()
    assert wall < budget + 60


def test_budget_with_epoch_limit_and_cli(tiny_root):
    res = CliRunner().invoke(app, ["--root", str(tiny_root), "train", "Tiny", "unet", "--fold", "2", "--epochs", "3",
                                   "--iters-per-epoch", "1", "--batch-size", "2", "--width", "4", "--device", "cpu",
                                   "--workers", "0", "--time-budget", "1h", "-q"])
    assert res.exit_code == 0, res.output
    cfg = json.loads((tiny_root / "results" / "Dataset901_Tiny" / "unet__none__2d" / "fold_2" / "config.json")
                     .read_text())
    assert (cfg["time_budget"], cfg["epochs_planned"], cfg["epochs_chosen"], cfg["epochs"]) == (3600.0, 3, 3, 3)


def test_grid_arms_share_the_budget_rule(tiny_root):
    """bench run --time-budget: a plain and a slice-module arm get the same budget, each fits its own epochs."""
    from salseg.bench.grid import run_grid

    kw = dict(iters_per_epoch=1, batch_size=2, width=4, device="cpu", workers=0, time_budget=1.5,
              options={"features": 4})
    grid = run_grid(tiny_root, "Tiny", ["unet"], ["none", "lstmsa"], config="2.5d", folds=[3],
                    settings=TrainSettings(**kw))
    assert not grid.failed and len(grid.trained) == 2
    cfgs = [RunConfig.load(c.fold_dir(tiny_root, grid.dataset) / "config.json") for c in grid.trained]
    assert [c.time_budget for c in cfgs] == [1.5, 1.5]
    assert all(c.epochs_chosen == c.epochs >= 1 and c.epochs_planned is None for c in cfgs)


# --------------------------------------------------------------------------------------------------- CPU recipe
def test_cpu_recipe_is_what_config_json_says(tiny_root, caplog):
    from salseg.train.resolve import make_run_config

    cpu = torch.device("cpu")
    with caplog.at_level(logging.INFO, logger="salseg.train.resolve"):
        cfg = make_run_config(tiny_root, TrainSettings("Tiny", "unet", "none", "2d", 0), cpu, 1)
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.warmup_epochs) == (
        CPU_RECIPE.optimizer, CPU_RECIPE.lr, CPU_RECIPE.weight_decay, CPU_RECIPE.warmup_epochs)
    assert cfg.options["width"] == CPU_RECIPE.unet_width and cfg.iters_per_epoch == CPU_RECIPE.iters_per_epoch
    assert cfg.batch_size == min(12, CPU_RECIPE.batch_size) and cfg.epochs == CPU_RECIPE.epochs
    assert cfg.cpu_defaults_applied["recipe"] == CPU_RECIPE.name
    assert cfg.cpu_defaults_applied["optimizer"] == CPU_RECIPE.optimizer
    line = [r.getMessage() for r in caplog.records if "CPU-sized defaults" in r.getMessage()]
    assert len(line) == 1 and f"recipe {CPU_RECIPE.name}" in line[0]
    # a user's optimizer keeps that optimizer's own defaults; a budget without --epochs drops the CPU epoch cap
    sgd = make_run_config(tiny_root, TrainSettings("Tiny", "unet", "none", "2d", 0, optimizer="sgd",
                                                   time_budget=60.0), cpu, 1)
    assert (sgd.optimizer, sgd.lr, sgd.momentum) == ("sgd", 0.01, 0.99) and "lr" not in sgd.cpu_defaults_applied
    assert "epochs" not in sgd.cpu_defaults_applied and sgd.time_budget == 60.0
    # other networks keep their recipe's optimizer on a CPU; a GPU run gets no CPU recipe at all
    assert make_run_config(tiny_root, TrainSettings("Tiny", "mtunet", "none", "2d", 0), cpu, 1).optimizer == "adam"
    gpu = make_run_config(tiny_root, TrainSettings("Tiny", "unet", "none", "2d", 0), torch.device("cuda"), 1)
    assert (gpu.optimizer, gpu.lr, gpu.cpu_defaults_applied, gpu.warmup_epochs) == ("sgd", 0.01, {}, 0)
