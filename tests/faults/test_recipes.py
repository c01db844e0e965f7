"""Round 3, recipes that cannot be right (issue 28 item 4): patch sizes, option values, non-finite numbers, the
final weights and splits.json are validated where they are read; each refusal is one line with exit 2 (a diverged
model: exit 1) and leaves no result behind."""

import json

import pytest
import torch

from salseg import results as R
from salseg.checks import check_multiple, nearest_multiples
from salseg.errors import ConfigError
from salseg.plan.topology import pool_and_conv_kernels
from tests.faults.helpers import DS, NAME, TRAIN, cli, one_line_error

BASE = [a for a in TRAIN if a not in ("--patch-size", "16")]  # TRAIN without its patch size


def _train(root, *extra):
    return cli("train", NAME, "unet", "-c", "2d", "-f", "0", *BASE, *extra, root=root)


def _no_run(root):
    fold = R.fold_dir(root, DS, "unet", "none", "2d", 0)
    return not (fold / R.CHECKPOINT_FINAL).exists() and not (fold / R.CONFIG_JSON).exists()


def test_nearest_multiples_are_the_neighbouring_multiples():
    for size in range(1, 200):
        for stride in (1, 2, 4, 16, 32):
            near = nearest_multiples(size, stride)
            assert all(m % stride == 0 and m > 0 for m in near)
            assert min(abs(m - size) for m in near) == min(abs(m - size) for m in range(stride, 400, stride))
    with pytest.raises(ConfigError, match=r"stride 16 16 .*nearest valid: 96 96 or 112 112"):
        check_multiple([100, 100], [16, 16], "--patch-size")


def test_patch_not_a_multiple_of_the_stride_is_refused_not_rounded(planned_root):
    r = _train(planned_root, "--patch-size", "100", "100")
    assert r.exit_code == 2, r.output
    line = one_line_error(r)
    stride = pool_and_conv_kernels([1.0, 1.0], [100, 100])[2]  # the planner's rule: 16 per axis
    assert stride == [16, 16]
    assert "--patch-size" in line and "100 100" in line and "16 16" in line and "96 96 or 112 112" in line, line
    assert _no_run(planned_root)


@pytest.mark.parametrize("patch", [("0", "0"), ("-4", "-4"), ("16", "0")])
def test_zero_or_negative_patch_names_the_option(planned_root, patch):
    r = _train(planned_root, "--patch-size", *patch)
    assert r.exit_code == 2, r.output
    line = one_line_error(r)
    assert "--patch-size" in line and "positive integers" in line and "topology" not in line, line
    assert _no_run(planned_root)


@pytest.mark.parametrize("value", [[96.0, 96.0], [-16, 16], [16.5, 16], [0, 16], [True, 16]])
def test_plans_patch_size_must_be_positive_integers(planned_root, value):
    path = R.plans_file(planned_root, DS)
    plans = json.loads(path.read_text())
    plans["configurations"]["2d"]["patch_size"] = value
    path.write_text(json.dumps(plans))
    r = _train(planned_root)
    assert r.exit_code == 2, r.output
    line = one_line_error(r)
    assert "plans.json" in line and "patch_size" in line, line


def test_plans_patch_size_off_stride_names_the_nearest(planned_root):
    path = R.plans_file(planned_root, DS)
    plans = json.loads(path.read_text())
    conf = plans["configurations"]["2d"]
    stride = [1] * 2
    for p in conf["pool_op_kernel_sizes"]:
        stride = [a * b for a, b in zip(stride, p)]
    conf["patch_size"] = [stride[0] * 3 + 1, stride[1] * 3]
    path.write_text(json.dumps(plans))
    r = _train(planned_root)
    assert r.exit_code == 2, r.output
    line = one_line_error(r)
    assert f"{stride[0] * 3} {stride[1] * 3}" in line and "plans.json" in line, line


@pytest.mark.parametrize("value", ["abc", "-4", "nan", "0", "4.5", "true"])
def test_option_values_are_typed_by_the_factory(planned_root, value):
    r = cli("train", NAME, "unet", "-c", "2d", "-f", "0", *[a for a in BASE if a not in ("--width", "4")],
            "--option", f"width={value}", root=planned_root)
    assert r.exit_code == 2, r.output
    line = one_line_error(r)
    assert f"width={value}" in line and "positive integer" in line, line
    assert _no_run(planned_root)


@pytest.mark.parametrize("args", [("train", NAME, "unet", *BASE, "--lr", "inf"),
                                  ("train", NAME, "unet", *BASE, "--lr", "nan"),
                                  ("train", NAME, "unet", *BASE, "--lr=-inf"),
                                  ("plan", NAME, "--gpu-memory", "nan"),
                                  ("plan", NAME, "--gpu-memory", "inf"),
                                  ("predict", "-i", "x", "-o", "y", "-d", NAME, "--step", "nan")])
def test_non_finite_numbers_are_refused_naming_the_option(planned_root, args):
    option = next(a.split("=")[0] for a in reversed(args) if a.startswith("--") and a not in BASE)
    r = cli(*args, root=planned_root)
    assert r.exit_code == 2, r.output
    line = one_line_error(r)
    assert option in line and "finite" in line, line


def test_library_refuses_non_finite_too(planned_root):
    from salseg.plan import plan_dataset
    from salseg.train import TrainSettings

    for bad in (float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="--lr.*finite"):
            TrainSettings(NAME, lr=bad)
        with pytest.raises(ConfigError, match="--gpu-memory.*finite"):
            plan_dataset(planned_root, NAME, gpu_memory_gb=bad)


def test_non_finite_weights_after_the_last_step_fail_the_run(planned_root):
    from salseg.errors import RunFailed
    from salseg.train import TrainSettings, train
    from salseg.train.trainer import Trainer

    class Poisoned(Trainer):  # the last step's update makes a weight infinite while its loss was finite
        def train_step(self, batch, epoch, it):
            loss = super().train_step(batch, epoch, it)
            if it + 1 == self.cfg.iters_per_epoch:
                with torch.no_grad():
                    next(self.model.parameters()).view(-1)[0] = float("inf")
            return loss

    settings = TrainSettings(NAME, "unet", config="2d", fold=0, device="cpu", epochs=1, iters_per_epoch=2,
                             batch_size=2, width=4, workers=0)
    with pytest.raises(RunFailed, match="NaN or infinity after epoch 1") as e:
        train(planned_root, settings, trainer=Poisoned)
    assert e.value.exit_code == 1
    fold = R.fold_dir(planned_root, DS, "unet", "none", "2d", 0)
    assert not (fold / R.CHECKPOINT_FINAL).exists() and not (fold / R.CHECKPOINT_LATEST).exists()


def _edit_splits(root, fn):
    path = R.splits_file(root, DS)
    splits = json.loads(path.read_text())
    fn(splits)
    path.write_text(json.dumps(splits))
    return path


@pytest.mark.parametrize("edit, words", [
    (lambda s: s[0]["val"].append(s[0]["train"][0]), ["fold 0", "both 'train' and 'val'"]),
    (lambda s: s[0].update(train=[]), ["fold 0", "empty 'train'"]),
    (lambda s: s[0].update(val=[]), ["fold 0", "empty 'val'"]),
    (lambda s: s[1]["train"].append("ghost"), ["fold 1", "ghost", "raw dataset does not have"]),
])
def test_splits_json_is_validated_where_it_is_read(planned_root, edit, words):
    path = _edit_splits(planned_root, edit)
    r = _train(planned_root)
    assert r.exit_code == 2, r.output
    line = one_line_error(r)
    assert str(path.name) in line and all(w in line for w in words), line
    assert "salseg preprocess" not in line, line
    assert _no_run(planned_root)
