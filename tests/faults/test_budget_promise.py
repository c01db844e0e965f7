"""Round 3, a time budget is a promise on a busy machine too (issue 28 item 7). Slow iterations are simulated: the
trainer's clock is advanced by a fixed number of seconds per iteration (as on a loaded 2-core machine), so the
test is fast and exact. The budget stops between iterations (an epoch ends early, at a learning rate of ~0), the
closing validation's cost is estimated, counted inside the budget and recorded (fewer mirror axes when it would
not fit), and warm-up shrinks when few epochs fit."""

import json
import logging
import time
import types

import pytest

from salseg import results as R
from salseg.train import TrainSettings, train
from salseg.train import trainer as trainer_module
from salseg.train.budget import budget_lr_factor, closing_plan, count_windows, fit_total_iterations
from salseg.train.trainer import Trainer
from tests.faults.helpers import DS, NAME

SLOW = 2.0  # simulated seconds per iteration


class FakeClock:
    def __init__(self):
        self.offset = 0.0

    def perf_counter(self):
        return time.perf_counter() + self.offset


@pytest.fixture
def slow(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(perf_counter=clock.perf_counter))
    return clock


def _run(root, clock, budget, **kw):
    seen = {"lr": [], "iters": [], "finish": None, "progress": set()}

    class Slow(Trainer):
        def train_step(self, batch, epoch, it):
            seen["lr"].append(self.optimizer.param_groups[0]["lr"] / self.optimizer.param_groups[0]["initial_lr"])
            seen["iters"].append((epoch, it))
            clock.offset += SLOW
            return super().train_step(batch, epoch, it)

        def measure_window(self, planes):  # the machine is as slow for the closing validation's windows
            return SLOW / 6

        def finish(self):
            seen["finish"] = clock.perf_counter() - self.t_begin  # training (and its validations) done
            super().finish()
            seen["end"] = clock.perf_counter() - self.t_begin

    settings = TrainSettings(NAME, "unet", config="2d", fold=0, device="cpu", iters_per_epoch=kw.pop("ipe", 40),
                             batch_size=2, width=4, workers=0, patch_size=(16, 16), time_budget=budget, **kw)
    out = train(root, settings, trainer=Slow, overwrite=True, progress=lambda d, done, total: seen["progress"].add(d))
    return out, seen, json.loads((out / R.CONFIG_JSON).read_text())


def test_budget_stops_between_iterations_and_ends_at_lr_zero(planned_root, slow):
    budget = 60.0
    out, seen, cfg = _run(planned_root, slow, budget, warmup_epochs=2)
    closing = cfg["closing_validation"]
    # the epoch of 40 iterations (80 simulated s) could not fit: it ended early, and it is the only one
    assert cfg["epochs"] == 1 and len(seen["iters"]) < 40
    # training stops before the budget minus the announced closing estimate (one iteration of slack)
    assert seen["finish"] <= budget - closing["estimated_seconds"] + SLOW
    assert seen["end"] <= budget + closing["estimated_seconds"]        # ends within budget + announced validation
    assert seen["lr"][-1] < 0.15                                         # the schedule ends at lr ~0
    assert max(seen["lr"]) > 0.9                                         # warm-up shrank: the full rate is reached
    assert "final validation windows" in seen["progress"]                # progress shows the windows


def test_closing_validation_is_counted_and_mirroring_fits_the_budget(planned_root, slow, caplog):
    with caplog.at_level(logging.INFO, logger="salseg"):
        _, _, small = _run(planned_root, slow, 30.0, ipe=8)
    assert small["closing_validation"]["mirror_axes"] == []              # mirroring would not fit 30 s
    final = [r.getMessage() for r in caplog.records if "validation cases" in r.getMessage()
             and "mean foreground Dice" in r.getMessage()]
    assert final and "no mirroring" in final[-1], final                 # the message says what was run
    assert small["closing_validation"]["mirror_axes_full"] == [0, 1]
    assert small["closing_validation"]["seconds"] >= 0
    _, _, large = _run(planned_root, slow, 400.0, ipe=8, epochs=2)       # --epochs is a limit under a budget
    assert large["closing_validation"]["mirror_axes"] == [0, 1] and large["epochs"] == 2
    fold = R.fold_dir(planned_root, DS, "unet", "none", "2d", 0)
    assert (fold / R.VALIDATION_DIR / R.SUMMARY_JSON).is_file()


def test_budget_arithmetic():
    # 100 s left at 2 s per iteration, a 10 s validation after every epoch of 10 iterations but the last (the
    # closing validation, set aside before, replaces it)
    total = fit_total_iterations(done=0, limit=None, left=100.0, iter_seconds=2.0, val_seconds=10.0, val_every=1,
                                 iters_per_epoch=10)
    epochs = -(-total // 10)
    assert (total, epochs) == (35, 4)             # 70 s + validations after epochs 1-3 (30 s); the 4th is closing
    assert total * 2.0 + (epochs - 1) * 10.0 <= 100.0 < (total + 1) * 2.0 + (-(-(total + 1) // 10) - 1) * 10.0
    assert fit_total_iterations(done=0, limit=7, left=100.0, iter_seconds=2.0, val_seconds=0.0, val_every=1,
                                iters_per_epoch=10) == 7
    # warm-up is at most a tenth of the fitted iterations; the last iteration is near 0
    assert budget_lr_factor(0, 20, warmup_epochs=2, iters_per_epoch=50) == pytest.approx(1 / 3)
    assert budget_lr_factor(2, 20, warmup_epochs=2, iters_per_epoch=50) == 1.0
    assert budget_lr_factor(19, 20, warmup_epochs=2, iters_per_epoch=50) < 0.1
    # mirroring: every axis doubles the windows; as many axes as fit a quarter of the budget
    axes, cost = closing_plan(windows=100, axes=(0, 1, 2), window_seconds=0.1, budget=500.0, cases=2)
    assert axes == (0, 1, 2) and cost == pytest.approx(100 * 8 * 0.1 * 1.25 + 2 + 2)
    axes, _ = closing_plan(windows=100, axes=(0, 1, 2), window_seconds=0.1, budget=200.0, cases=2)
    assert axes == (0,)                                                  # 2 axes: 54 s > 50 s; 1 axis: 29 s
    assert closing_plan(windows=100, axes=(0, 1), window_seconds=1.0, budget=10.0)[0] == ()
    # windows: a 2D patch slides over every slice (nnU-Net's step rule: 1 tile if the size fits the patch)
    assert count_windows([(6, 12, 12)], (16, 16)) == 6
    assert count_windows([(1, 40, 16)], (16, 16)) == 4                   # ceil((40 - 16) / 8) + 1 along y


def test_loader_start_up_is_spent_time_not_the_iteration_rate():
    # on a loaded machine the first batch waits for the loader workers (here 120 s of a 5-min budget); taken as the
    # iteration rate, the closing validation's estimate alone would exceed the budget and training would stop after
    # one iteration (seen in quickstart at load ~7). The start-up counts as spent; the rate is measured after it.
    from salseg.train.budget import BudgetClock, IterationBudget

    budget = IterationBudget(BudgetClock(300.0, None, 5), iters_per_epoch=25, warmup_epochs=0, batch_size=4,
                             windows=40, mirror_axes=(0, 1), cases=4)
    assert budget.step(0, 0, 120.0) is not None                          # the first batch came after 120 s
    assert budget.step(1, 1, 121.0) is not None                          # then 1 s per iteration
    assert 100 < budget.total < 180                                      # ~180 s left, minus validations
    assert budget.step(200, 200, 290.0) is None                          # and it still stops when it is spent


def test_closing_estimate_uses_a_timed_window_not_the_training_rate():
    # at 10 s per training iteration of batch 4 the old rule guessed 10 / 12 s per window; a forward pass without
    # gradients timed at set-up (here 0.05 s) is what the closing validation costs, so mirroring fits again
    from salseg.train.budget import BudgetClock, IterationBudget

    budget = IterationBudget(BudgetClock(300.0, None, 50), iters_per_epoch=25, warmup_epochs=0, batch_size=4,
                             windows=40, mirror_axes=(0, 1), cases=4)
    budget.timed_window(0.05)
    budget.step(0, 0, 1.0)
    budget.step(1, 1, 11.0)
    assert (budget.axes, budget.closing_seconds) == closing_plan(40, (0, 1), 0.05, 300.0, 4)
    assert budget.axes == (0, 1)
    untimed = IterationBudget(BudgetClock(300.0, None, 50), iters_per_epoch=25, warmup_epochs=0, batch_size=4,
                              windows=40, mirror_axes=(0, 1), cases=4)
    untimed.step(0, 0, 1.0)
    untimed.step(1, 1, 11.0)
    assert untimed.axes == () and untimed.closing_seconds > budget.closing_seconds


def test_timed_window_is_a_real_forward_pass(planned_root):
    # the trainer times one batch of real windows of its own network at set-up (2D: a batch of slices)
    from salseg.run.config import RunConfig
    from salseg.train.validation import time_one_window

    out, _, _ = _run(planned_root, FakeClock(), 5.0, ipe=2, epochs=1)
    cfg = RunConfig.load(out / R.CONFIG_JSON)
    from salseg.run import load_trained

    model = load_trained(planned_root, DS, "unet", "none", "2d", [0], "final", None).model
    seconds = time_one_window(model, cfg, __import__("torch").device("cpu"), planes=3)
    assert 0 < seconds < 5.0
    assert cfg.closing_validation["estimated_seconds"] > 0


def test_a_machine_that_becomes_busier_slows_the_closing_estimate_alike():
    # windows timed at set-up (0.1 s) while iterations took 1 s; then another job starts and iterations take 3 s:
    # the closing validation will be as slow, so its estimate triples and the fit uses the recent iteration time
    from salseg.train.budget import RECENT, BudgetClock, IterationBudget

    budget = IterationBudget(BudgetClock(3000.0, None, 1000), iters_per_epoch=1000, warmup_epochs=0, batch_size=4,
                             windows=100, mirror_axes=(), cases=2)
    budget.timed_window(0.1)
    t = 0.0
    for i in range(20):
        budget.step(i, i, t)
        t += 1.0
    calm = budget.closing_seconds
    assert budget.iter_seconds == pytest.approx(1.0) and calm == pytest.approx(closing_plan(100, (), 0.1, 3000, 2)[1])
    for i in range(20, 20 + RECENT + 1):
        budget.step(i, i, t)
        t += 3.0
    assert budget.iter_seconds == pytest.approx(3.0)
    assert budget.closing_seconds == pytest.approx(closing_plan(100, (), 0.3, 3000, 2)[1])
    assert budget.closing_seconds > 2.5 * calm - 10


def test_a_busy_cpu_gets_the_threads_the_other_processes_leave_free(monkeypatch, caplog):
    import torch

    from salseg import parallel
    from salseg.parallel import threads_for_busy_machine, threads_for_load

    assert threads_for_load(2, 2, 0.7) == 2      # idle: torch's own choice
    assert threads_for_load(2, 2, 1.4) == 1      # one other process: one core left
    assert threads_for_load(2, 2, 4.0) == 1      # oversubscribed: one thread, never none
    assert threads_for_load(16, 8, 3.2) == 8     # 13 free cores: no more than before
    assert threads_for_load(16, 16, 3.2) == 13
    before = torch.get_num_threads()
    monkeypatch.setattr(parallel, "available_cores", lambda: 2)
    monkeypatch.setattr(parallel.os, "getloadavg", lambda: (4.0, 4.0, 4.0))
    for key in (*parallel.THREAD_ENV, parallel.NUM_THREADS_ENV):
        monkeypatch.delenv(key, raising=False)
    torch.set_num_threads(2)
    try:
        with caplog.at_level(logging.INFO, logger="salseg.parallel"):
            with threads_for_busy_machine("a test") as n:
                assert n == 1 and torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2      # restored after the block
        assert any("load average 4.0 on 2 cores" in r.getMessage() and "1 thread(s) instead of 2" in r.getMessage()
                   for r in caplog.records)
        for key in (*parallel.THREAD_ENV, parallel.NUM_THREADS_ENV):  # the user's choice is left alone
            monkeypatch.setenv(key, "2")
            with threads_for_busy_machine("a test") as n:
                assert n == 2 and torch.get_num_threads() == 2
            monkeypatch.delenv(key)
    finally:
        torch.set_num_threads(before)
