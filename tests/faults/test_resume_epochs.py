"""Fault 3: `train --continue` with other --epochs never trains an epoch at learning rate 0."""

import json

import pytest

from salseg import results as R
from salseg.run import RunConfig
from salseg.train import TrainSettings, train
from tests.faults.helpers import DS, NAME, cli, flat, one_line_error

KW = dict(config="2d", fold=0, iters_per_epoch=1, batch_size=2, width=4, patch_size=[16, 16], device="cpu",
          workers=0, val_every=100, optimizer="sgd")  # SGD: its lr 0.01 and no warm-up (not the CPU recipe's Adam)
LR = 0.01


class Stop(Exception):
    pass


def _stop_after(n):
    def hook(epoch, record):
        if epoch == n:
            raise Stop
    return hook


def _lrs(fold):
    return [json.loads(line)["lr"] for line in (fold / R.LOG_JSONL).read_text().splitlines()]


def _poly(e, total):
    return LR * (1 - e / total) ** 0.9


def _interrupted(root, epochs, after):
    with pytest.raises(Stop):
        train(root, TrainSettings(NAME, "unet", epochs=epochs, **KW), epoch_hook=_stop_after(after))
    return R.fold_dir(root, DS, "unet", "none", "2d", 0)


def test_more_epochs_recomputes_poly(planned_root):
    fold = _interrupted(planned_root, 4, 1)
    r = cli("train", NAME, "unet", "-c", "2d", "--continue", "--epochs", "6", "--device", "cpu", "-q",
            root=planned_root)
    assert r.exit_code == 0, r.output
    assert "resuming after epoch 1: epochs 4 -> 6, poly recomputed over 6 epochs" in flat(r), r.output
    lrs = _lrs(fold)
    assert len(lrs) == 6 and min(lrs) > 0
    assert lrs == pytest.approx([_poly(0, 4)] + [_poly(e, 6) for e in range(1, 6)])
    cfg = RunConfig.load(fold / R.CONFIG_JSON)
    assert cfg.epochs == 6 and cfg.resumed == [{"after_epoch": 1, "epochs_before": 4, "epochs_after": 6,
                                                "schedule": "poly recomputed over 6 epochs"}]


def test_fewer_epochs_recomputes_or_refuses(planned_root):
    fold = _interrupted(planned_root, 4, 2)
    for n in (1, 2):   # nothing left to train: refused, nothing changed
        r = cli("train", NAME, "unet", "-c", "2d", "--continue", "--epochs", str(n), "--device", "cpu", "-q",
                root=planned_root)
        assert r.exit_code == 2, r.output
        assert "completed 2 of 4 epochs" in one_line_error(r)
    assert len(_lrs(fold)) == 2
    train(planned_root, TrainSettings(NAME, "unet", epochs=3, **KW), resume=True)
    lrs = _lrs(fold)
    assert lrs == pytest.approx([_poly(0, 4), _poly(1, 4), _poly(2, 3)]) and min(lrs) > 0


def test_other_iterations_refused(planned_root):
    _interrupted(planned_root, 3, 1)
    r = cli("train", NAME, "unet", "-c", "2d", "--continue", "--iters-per-epoch", "5", "--device", "cpu", "-q",
            root=planned_root)
    assert r.exit_code == 2 and "--iters-per-epoch 5 differs from the run's 1" in one_line_error(r)
