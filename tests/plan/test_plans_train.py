"""A preset's plans through preprocess and train (--plans NAME, the plans' network picked by default), and the
2.5d batch sized for a slice module's real cost (salseg.plan.memory)."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from salseg.errors import ConfigError
from salseg.fileio import read_json
from salseg.plan import plan_dataset
from salseg.plan import topology as topo
from salseg.plan.memory import module_cost_factor, slice_module_batch

from tests.plan.rawdata_helpers import blob_case, write_raw_dataset

CONF = {"patch_size": [32, 32], "batch_size": 30, "pool_op_kernel_sizes": [[1, 1], [2, 2], [2, 2]],
        "features_per_stage": [32, 64, 128], "conv_kernel_sizes": [[3, 3]] * 3, "neighbours": 3}


def test_module_cost_by_hand():
    enc = 2 * 32 * 32 * 32 + 2 * 64 * 16 * 16 + 2 * 128 * 8 * 8                   # plain: 2 convs per stage
    dec = 3 * 64 * 16 * 16 + 3 * 32 * 32 * 32 + 2 * 32 * 32                         # + the full-res head (2 classes)
    assert topo.encoder_decoder_elements(CONF, 2) == (enc, dec)
    assert module_cost_factor(CONF, 2, "head", 3)[0] == 3.0
    assert module_cost_factor(CONF, 2, "skip", 3)[0] == pytest.approx((3 * enc + dec) / (enc + dec))
    assert module_cost_factor(CONF, 2, "parallel", 3)[0] == 1.0
    assert module_cost_factor(CONF, 2, "head", 3, module="stack")[0] == 1.0
    batch, why = slice_module_batch(CONF, 2, "head", 3)
    assert batch == 10 and "K=3" in why
    batch, _ = slice_module_batch(CONF, 2, "bottleneck", 3)
    assert batch == int(30 / ((3 * enc + dec) / (enc + dec)))
    batch, why = slice_module_batch(dict(CONF, batch_size=2), 2, "head", 3)       # never below the minimum 2
    assert batch == 2 and "may exceed the memory target" in why
    assert slice_module_batch(dict(CONF, batch_size=1), 2, "head", 3)[0] == 1
    # a resenc configuration counts its residual encoder
    res = dict(CONF, n_blocks_per_stage=[1, 3, 4], n_conv_per_stage_decoder=[1, 1])
    enc_r, _ = topo.encoder_decoder_elements(res, 2)
    assert enc_r == topo.resenc_encoder_elements([32, 32], CONF["pool_op_kernel_sizes"], [32, 64, 128], [1, 3, 4])


@pytest.fixture
def planned(tmp_path):
    rng = np.random.default_rng(5)
    cases = [blob_case(f"c{i}", (6, 36, 36), (3.0, 1.0, 1.0), rng) for i in range(4)]
    write_raw_dataset(tmp_path, "Knee", cases, labels={"background": 0, "a": 1, "b": 2}, dataset_id=41)
    plan_dataset(tmp_path, "Knee", preset="resenc-m", configs=["2d", "2.5d"])
    return tmp_path


def _cli(root, *args):
    from salseg_cli.main import app

    return CliRunner().invoke(app, ["--root", str(root), *map(str, args)])


def test_preset_plans_preprocess_and_train(planned):
    torch.set_num_threads(1)
    root = planned
    r = _cli(root, "preprocess", "Knee", "--plans", "plans_resencm")
    assert r.exit_code == 0, r.output
    r = _cli(root, "train", "Knee", "--plans", "plans_resencm", "--config", "2d", "--epochs", "1",
             "--iters-per-epoch", "1", "--batch-size", "2", "--patch-size", "32", "32", "--width", "4",
             "--device", "cpu", "-q")
    assert r.exit_code == 0, r.output
    cfg = read_json(root / "results" / "Dataset041_Knee" / "resenc__none__2d" / "fold_0" / "config.json")
    assert cfg["network"] == "resenc"                     # picked from the plans
    assert cfg["plans"]["plans_name"] == "plans_resencm"
    assert cfg["plans"]["batch_size_reason"] == "set by the user" and cfg["batch_size"] == 2
    assert cfg["plans"]["n_blocks_per_stage"] == [1, 3, 4, 6][:len(cfg["plans"]["pool_op_kernel_sizes"])]
    r = _cli(root, "train", "Knee", "--plans", "plans_resencl", "--device", "cpu")
    assert r.exit_code == 2 and "no plans named 'plans_resencl'" in r.output


def test_2_5d_batch_fits_every_arm_and_a_2d_slice_run_is_sized(planned, caplog):
    from salseg.train import TrainSettings
    from salseg.train.resolve import make_run_config

    root = planned
    confs = read_json(root / "preprocessed" / "Dataset041_Knee" / "plans.json")["named_plans"]["plans_resencm"]
    b2d = confs["configurations"]["2d"]["batch_size"]
    c25 = confs["configurations"]["2.5d"]
    assert c25["batch_size"] == max(2, b2d // 3) and "costliest position" in c25["batch_size_reason"]
    gpu = torch.device("cuda")
    arms = [make_run_config(root, TrainSettings("Knee", "resenc", m, "2.5d", 0, plans_name="plans_resencm", position=p),
                            gpu, 1)
            for m, p in (("none", "head"), ("salstm", "head"), ("lstmsa", "skip"), ("stack", "head"))]
    assert {a.batch_size for a in arms} == {c25["batch_size"]}        # one batch for every arm: same protocol
    assert all(a.configuration["batch_size_reason"] == c25["batch_size_reason"] for a in arms)
    # a slice module on the 2d plans (sized for one slice): the trainer sizes it for the module and warns
    cfg = make_run_config(root, TrainSettings("Knee", "resenc", "salstm", "2d", 0, plans_name="plans_resencm"), gpu, 1)
    assert cfg.batch_size == max(2, b2d // 3)
    assert cfg.configuration["batch_size_reason"].startswith(f"planned batch {b2d} / 3.00")
    assert "use --config 2.5d" in caplog.text
    cfg = make_run_config(root, TrainSettings("Knee", None, "none", "2d", 0, plans_name="plans_resencm"), gpu, 1)
    assert cfg.network == "resenc" and cfg.batch_size == b2d
    assert cfg.configuration["batch_size_reason"] == "planned (plans_resencm)"
    with pytest.raises(ConfigError, match="no plans named 'nope'"):
        make_run_config(root, TrainSettings("Knee", None, "none", "2d", 0, plans_name="nope"), torch.device("cpu"), 1)


@pytest.mark.slow  # a whole bench run (train + evaluate + report); `train --plans` is covered above
def test_bench_run_takes_plans(planned):
    torch.set_num_threads(1)
    root = planned
    assert _cli(root, "preprocess", "Knee", "--plans", "plans_resencm").exit_code == 0
    r = _cli(root, "bench", "run", "Knee", "--plans", "plans_resencm", "--networks", "resenc", "--modules", "none",
             "--config", "2d", "--folds", "0", "--epochs", "1", "--iters-per-epoch", "1", "--patch-size", "32", "32",
             "--width", "4", "--device", "cpu", "--no-efficiency", "-q")
    assert r.exit_code == 0, r.output
    cfg = read_json(root / "results" / "Dataset041_Knee" / "resenc__none__2d" / "fold_0" / "config.json")
    assert cfg["plans"]["plans_name"] == "plans_resencm" and cfg["network"] == "resenc"
