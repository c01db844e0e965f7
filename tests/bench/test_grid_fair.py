"""`bench run`'s fairness logic on grids of fake arms (salseg.train.train replaced by a function that writes a fold
folder with known per-case Dice): seeds (folders, results.csv, mean ± SD over seeds, per-case seed averaging before
the paired test), none + stack comparisons in one Holm family, the protocol check, and a grid that survives an arm
raising RuntimeError (also a Ray worker that dies). Every expected number is recomputed here from the planted
values with numpy / scipy."""

from __future__ import annotations

import csv
import json
import zlib

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from salseg import results as R
from salseg.bench.grid import Combination, GridResult, bench_run
from salseg.errors import ConfigError
from salseg.fileio import write_json
from salseg.protocol import protocol_hash
from salseg.stats import correct
from salseg.stats.mixed import seed_model
from salseg_cli.main import app
from tests.bench.test_bench_run import NAME, make_tiny_dataset

PROTOCOL = {"optimizer": "sgd", "lr": 0.01, "epochs": 1, "batch_size": 2, "deep_supervision": True}
BASE = {"none": 0.60, "stack": 0.68, "lstmsa": 0.74}
OTHER = {"salstm": 0.70}
LABELS = ("1", "2")


def dice(module: str, seed: int, case: str, label: str) -> float:
    """The planted Dice of one arm's case: the module's base plus a fixed pseudo-random part."""
    return {**BASE, **OTHER}[module] + 0.2 * (zlib.crc32(f"{module}|{seed}|{case}|{label}".encode()) % 1000) / 1000


class FakeTrain:
    """Stands in for salseg.train.train: writes config.json (protocol), summary.json and checkpoint_final.pt."""

    def __init__(self, protocols=None, fail=None):
        self.protocols = protocols or {}   # module -> protocol (None: an old config.json without one)
        self.fail = fail or {}             # (module, seed) -> exception to raise
        self.calls = []

    def __call__(self, root, settings, *, progress=None, **kwargs):
        from salseg.plan.splits import fold_cases

        dataset, network, module, config = settings.dataset, settings.network, settings.module, settings.config
        fold, seed, deep_supervision = settings.fold, settings.seed, settings.deep_supervision
        self.calls.append({"module": module, "fold": fold, "seed": seed, "deep_supervision": deep_supervision})
        if (module, seed) in self.fail:
            raise self.fail[(module, seed)]
        _, val = fold_cases(root, dataset, fold)
        out = R.fold_dir(root, dataset, network, module, config, fold, seed=seed)
        protocol = self.protocols.get(module, PROTOCOL)
        cfg = {"seed": seed, "deep_supervision": deep_supervision}
        if protocol is not None:
            cfg.update(protocol=protocol, protocol_hash=protocol_hash(protocol))
        write_json(out / R.CONFIG_JSON, cfg)
        cases = [{"prediction_file": f"{c}.nii.gz", "reference_file": f"{c}.nii.gz",
                  "metrics": {lab: {"Dice": dice(module, seed, c, lab), "HD95": 1.0} for lab in LABELS}}
                 for c in val]
        mean = {lab: {"Dice": float(np.mean([c["metrics"][lab]["Dice"] for c in cases])), "HD95": 1.0}
                for lab in LABELS}
        write_json(out / R.VALIDATION_DIR / R.SUMMARY_JSON, {
            "metric_per_case": cases, "mean": mean,
            "foreground_mean": {"Dice": float(np.mean([mean[lab]["Dice"] for lab in LABELS])), "HD95": 1.0}})
        torch.save({"model": {}, "config": cfg}, out / R.CHECKPOINT_FINAL)  # the files agree: one finished run
        return out


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A fresh root with the tiny dataset (10 cases, 2 per fold) and salseg.train.train replaced."""
    from salseg.nets import registry
    from salseg.nets.registry import ModuleEntry

    root = tmp_path / "root"
    ds = make_tiny_dataset(root, cases=10)
    if "stack" not in registry.modules():  # until the stack module is on this branch: a stand-in entry
        monkeypatch.setitem(registry._modules, "stack", ModuleEntry("stack", "none"))
    ft = FakeTrain()
    monkeypatch.setattr("salseg.train.train", ft)
    return root, ds, ft


def cli(root, *args):
    return CliRunner().invoke(app, ["--root", str(root), "bench", "run", NAME, "--networks", "unet", "--config",
                                    "2.5d", "--no-efficiency", "-q", *args])


def _val_cases(root, ds, fold):
    from salseg.plan.splits import fold_cases

    return fold_cases(root, ds, fold)[1]


def case_means(root, ds, module, folds, seeds):
    """case -> mean over seeds of the per-case foreground mean Dice (the values bench should test)."""
    return {c: np.mean([np.mean([dice(module, s, c, lab) for lab in LABELS]) for s in seeds])
            for f in folds for c in _val_cases(root, ds, f)}


def test_seeds_and_both_baselines(fake):
    root, ds, ft = fake
    folds, seeds = [0, 1], [0, 1, 2]
    res = cli(root, "--modules", "none", "stack", "lstmsa", "--folds", "0", "1", "--seeds", "0", "1", "2",
              "--no-deep-supervision", "--name", "s")
    assert res.exit_code == 0, res.output
    # every (module, fold, seed) trained once, into its own folder, deep supervision passed to every arm alike
    assert len(ft.calls) == 18 and all(c["deep_supervision"] is False for c in ft.calls)
    assert {(c["module"], c["fold"], c["seed"]) for c in ft.calls} == \
        {(m, f, s) for m in BASE for f in folds for s in seeds}
    assert (R.experiment_dir(root, ds, "unet", "lstmsa", "2.5d") / "fold_1_seed2" / "config.json").is_file()
    assert "--seeds 0 1 2" not in res.output          # the recommendation is for one-seed grids only
    out = R.bench_dir(root, "s")
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 18 and list(rows[0])[5:8] == ["fold", "seed", "n_cases"]
    assert [(r["module"], r["fold"], r["seed"]) for r in rows[:4]] == \
        [("none", "0", "0"), ("none", "0", "1"), ("none", "0", "2"), ("none", "1", "0")]
    bench = json.loads((out / "bench.json").read_text())
    # mean ± SD over seeds: each seed's mean over its folds, then mean and SD (ddof 1) over the seeds
    summary = {s["module"]: s for s in bench["summary"]}
    for module in BASE:
        per_seed = [np.mean([np.mean([np.mean([dice(module, s, c, lab) for c in _val_cases(root, ds, f)])
                                      for lab in LABELS]) for f in folds]) for s in seeds]
        rec = summary[module]
        assert rec["seeds"] == seeds and rec["sd_over"] == "seeds" and rec["n_cases"] == 4
        assert rec["dice_mean"] == pytest.approx(np.mean(per_seed), abs=1e-9)
        assert rec["dice_mean_std"] == pytest.approx(np.std(per_seed, ddof=1), abs=1e-9)
    assert summary["lstmsa"]["dice_increase_vs_stack"] == pytest.approx(
        summary["lstmsa"]["dice_mean"] - summary["stack"]["dice_mean"])
    assert summary["stack"]["dice_increase_vs_stack"] is None
    # significance: lstmsa vs none, lstmsa vs stack, stack vs none -- one Holm family, the mixed model on the
    # seeds x patients values (each patient's two cases averaged per seed: dataset.json groups)
    pairs = [(s["method"], s["reference"]) for s in bench["stats"]]
    assert sorted(pairs) == sorted([("unet__lstmsa__2.5d", "unet__none__2.5d"),
                                    ("unet__lstmsa__2.5d", "unet__stack__2.5d"),
                                    ("unet__stack__2.5d", "unet__none__2.5d")])
    cases = sorted(case_means(root, ds, "none", folds, seeds))
    patients = sorted({int(c[5:8]) // 2 for c in cases})

    def runs(module):
        return np.array([[np.mean([np.mean([dice(module, s, c, lab) for lab in LABELS]) for c in cases
                                   if int(c[5:8]) // 2 == g]) for g in patients] for s in seeds])

    raw = []
    for rec in bench["stats"]:
        fit = seed_model(*(runs(name.split("__")[1]) for name in (rec["method"], rec["reference"])))
        assert rec["test"] == "mixed" and rec["n"] == len(patients) == 2 and rec["n_cases"] == 4
        assert rec["mean_diff"] == pytest.approx(fit["mean_diff"], abs=1e-9)
        assert rec["p"] == pytest.approx(fit["p"], rel=1e-6) and rec["df"] == pytest.approx(fit["df"])
        raw.append(rec["p"])
    assert [r["p_corrected"] for r in bench["stats"]] == pytest.approx(correct(raw, "holm"))
    # table.md: both comparisons of lstmsa, stack as the reference of its own column, seeds listed
    md = (out / "table.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Network"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert cols[-4:] == ["p vs none (Holm)", "Verdict vs none", "p vs stack (Holm)", "Verdict vs stack"]
    table = {r[1]: r for r in (line.strip("|").split(" | ") for line in md.splitlines()
                               if line.startswith("| unet |"))}
    by_pair = {(s["method"], s["reference"]): s for s in bench["stats"]}
    lstmsa = [c.strip() for c in table["lstmsa"]]
    assert lstmsa[cols.index("Seeds")] == "0,1,2"
    assert lstmsa[-3] == by_pair[("unet__lstmsa__2.5d", "unet__none__2.5d")]["verdict"]
    assert lstmsa[-1] == by_pair[("unet__lstmsa__2.5d", "unet__stack__2.5d")]["verdict"]
    assert [c.strip() for c in table["stack"]][-1] == "reference"
    assert "mean ± SD over seeds" in md
    assert "Protocol: every arm of a network trained by one recipe" in md
    assert protocol_hash(PROTOCOL)[:12] in md
    page = (out / "report.html").read_text()
    assert "Verdict vs stack" in page
    assert by_pair[("unet__lstmsa__2.5d", "unet__stack__2.5d")]["verdict"] in page

    # re-run: finished (fold, seed) pairs are skipped; a new seed trains only its arms
    ft.calls.clear()
    res = cli(root, "--modules", "none", "stack", "lstmsa", "--folds", "0", "1", "--seeds", "0", "1", "2", "3",
              "--name", "s")
    assert res.exit_code == 0, res.output
    assert "trained 6, skipped 18 finished" in res.output
    assert sorted({c["seed"] for c in ft.calls}) == [3] and all(c["deep_supervision"] is True for c in ft.calls)


def test_an_arm_that_raises_does_not_end_the_grid(fake):
    root, ds, ft = fake
    ft.fail[("lstmsa", 1)] = RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")
    res = cli(root, "--modules", "none", "lstmsa", "--folds", "0", "--seeds", "0", "1", "--name", "f")
    assert res.exit_code == 1, res.output
    assert "trained 3, skipped 0 finished, 1 failed" in res.output and "Traceback" not in res.output
    out = R.bench_dir(root, "f")
    bench = json.loads((out / "bench.json").read_text())
    (failed,) = bench["grid"]["failed"]
    assert failed == {"combination": "unet__lstmsa__2.5d/fold_0_seed1", "type": "RuntimeError",
                      "error": "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail"}
    assert len(bench["rows"]) == 3 and len(bench["stats"]) == 1  # lstmsa (seed 0) vs none still compared
    md = (out / "table.md").read_text()
    assert "- failed unet__lstmsa__2.5d/fold_0_seed1: RuntimeError: CUDA out of memory. Tried to allocate " \
           "2.00 GiB\n" in md
    assert "failed unet__lstmsa__2.5d/fold_0_seed1" in (out / "report.html").read_text()
    # the re-run trains only the failed arm
    del ft.fail[("lstmsa", 1)]
    ft.calls.clear()
    assert cli(root, "--modules", "none", "lstmsa", "--folds", "0", "--seeds", "0", "1", "--name", "f").exit_code == 0
    assert [(c["module"], c["seed"]) for c in ft.calls] == [("lstmsa", 1)]
    # Ctrl-C is not an arm failure: it ends the grid
    ft.fail[("none", 2)] = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        bench_run(root, NAME, ["unet"], ["none"], config="2.5d", seeds=[2], efficiency=False)


def test_protocol_check(fake):
    root, ds, ft = fake
    ft.protocols["lstmsa"] = dict(PROTOCOL, epochs=2, lr=0.001)
    res = cli(root, "--modules", "none", "lstmsa", "salstm", "--name", "p")
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert [c["module"] for c in ft.calls] == ["none", "lstmsa"]  # refused as soon as the mixed arm finished
    msg = " ".join(res.output.split())
    assert "2 different protocols" in msg and "--allow-mixed-protocol" in msg
    assert "epochs (unet__none__2.5d/fold_0=1, unet__lstmsa__2.5d/fold_0=2)" in msg
    assert "lr (unet__none__2.5d/fold_0=0.01, unet__lstmsa__2.5d/fold_0=0.001)" in msg
    assert "batch_size" not in msg
    assert not R.bench_dir(root, "p").exists()  # refused: nothing written
    # the finished arms are checked before anything trains
    ft.calls.clear()
    res = cli(root, "--modules", "none", "lstmsa", "salstm", "--seeds", "0", "1", "--name", "p")
    assert res.exit_code == 2 and ft.calls == []
    # allowed: written, with the warning in table.md, report.html and bench.json
    res = cli(root, "--modules", "none", "lstmsa", "salstm", "--allow-mixed-protocol", "--name", "p")
    assert res.exit_code == 0, res.output
    out = R.bench_dir(root, "p")
    bench = json.loads((out / "bench.json").read_text())
    assert bench["protocol"]["mixed"] == ["unet"] and bench["protocol"]["allow_mixed"] is True
    assert bench["protocol"]["hashes"] == {"unet__none__2.5d/fold_0": protocol_hash(PROTOCOL),
                                           "unet__lstmsa__2.5d/fold_0": protocol_hash(ft.protocols["lstmsa"]),
                                           "unet__salstm__2.5d/fold_0": protocol_hash(PROTOCOL)}
    for f in ("table.md", "report.html"):
        assert "MIXED PROTOCOL (--allow-mixed-protocol)" in (out / f).read_text()
    assert "unet__lstmsa__2.5d/fold_0=2" in bench["protocol"]["warnings"][0]
    assert "(+1 like it)" in bench["protocol"]["warnings"][0]  # none and salstm share a protocol
    assert len(bench["stats"]) == 2


def test_old_config_without_protocol_warns(fake):
    root, ds, ft = fake
    ft.protocols["none"] = None
    res = cli(root, "--modules", "none", "lstmsa", "--name", "o")
    assert res.exit_code == 0, res.output
    bench = json.loads((R.bench_dir(root, "o") / "bench.json").read_text())
    (warning,) = bench["protocol"]["warnings"]
    assert warning.startswith("unet: fairness cannot be checked for 1 arm(s)") and "unet__none__2.5d/fold_0" in warning
    assert "fairness cannot be checked" in (R.bench_dir(root, "o") / "table.md").read_text()
    assert "fairness cannot be checked" in " ".join(res.output.split())


def test_bad_seeds(fake):
    root, _, _ = fake
    res = cli(root, "--modules", "none", "--seeds", "-1")
    assert res.exit_code == 2 and "seed must be an integer >= 0" in res.output
    with pytest.raises(ConfigError, match="plain folder name"):
        bench_run(root, NAME, ["unet"], ["none"], config="2.5d", name="../x")  # refused before training


def test_ray_worker_that_dies_is_recorded(fake):
    """A Ray worker killed mid-task (os._exit) and a task raising RuntimeError: each recorded as its arm's failure
    (the task's own exception, not Ray's wrapper), the other arm still trained."""
    pytest.importorskip("ray")
    import ray

    from salseg.bench import grid as G

    root, ds, _ = fake

    def task(root_, dataset, combo, kwargs):  # a closure: Ray pickles it by value
        import os

        if combo["seed"] == 1:
            os._exit(3)
        if combo["seed"] == 2:
            raise RuntimeError("CUDA out of memory (planted)")
        return combo["module"]

    todo = [Combination("unet", "none", "2.5d", 0, None, s) for s in (0, 1, 2)]
    res = GridResult(ds, todo)
    G._run_ray(str(root), ds, todo, {}, res, None, num_cpus=1, task_fn=task)
    assert res.trained == todo[:1] and not ray.is_initialized()
    died, raised = sorted(res.failed, key=lambda f: f["combination"].seed)
    assert died["combination"] == todo[1] and died["type"] in ("WorkerCrashedError", "ActorDiedError",
                                                                "LocalRayletDiedError", "NodeDiedError")
    assert died["error"].startswith(died["type"])
    assert raised == {"combination": todo[2], "type": "RuntimeError", "error": "RuntimeError: CUDA out of memory "
                                                                               "(planted)"}
