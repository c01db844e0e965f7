"""Round 3, finished work destroyed (issue 28 item 1): a fold folder holding a finished run is refused without
--overwrite; with it, the new run trains aside and replaces the old one only when it has finished, so an
interrupted or failed re-run leaves every file of the finished run as it was. `bench run` counts a fold as finished
only when config.json, checkpoint_final.pt and validation/summary.json name one run."""

import hashlib
import json

import pytest

from salseg import results as R
from salseg.bench.collect import is_finished
from salseg.run.identity import finished_run, staging_dir
from salseg.train import TrainSettings, train
from salseg.train.trainer import Trainer
from tests.faults.helpers import DS, NAME, TRAIN, cli, one_line_error


def _fold(root):
    return R.fold_dir(root, DS, "unet", "none", "2d", 0)


def _digest(folder):
    """Every file of the run (name -> sha256), the lock file aside."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".salseg.lock")}


def _settings(**kw):
    base = dict(config="2d", fold=0, device="cpu", epochs=2, iters_per_epoch=2, batch_size=2, width=4, workers=0,
                patch_size=(16, 16))
    return TrainSettings(NAME, "unet", **{**base, **kw})


def test_finished_run_is_refused_without_overwrite(trained_root):
    fold = _fold(trained_root)
    before = _digest(fold)
    assert finished_run(fold) and is_finished(fold)
    r = cli("train", NAME, "unet", "-c", "2d", "-f", "0", *TRAIN, "--lr", "0.5", root=trained_root)
    assert r.exit_code == 2, r.output
    line = one_line_error(r)
    assert "finished run" in line and "--overwrite" in line and "fold_0" in line, line
    assert _digest(fold) == before


class Interrupted(Trainer):
    """Ctrl-C in the second iteration of the first epoch (after config.json and log.jsonl were written)."""

    def train_step(self, batch, epoch, it):
        if it == 1:
            raise KeyboardInterrupt
        return super().train_step(batch, epoch, it)


def test_interrupted_overwrite_keeps_the_finished_run(trained_root):
    fold = _fold(trained_root)
    before = _digest(fold)
    with pytest.raises(KeyboardInterrupt):
        train(trained_root, _settings(lr=0.5), overwrite=True, trainer=Interrupted)
    assert _digest(fold) == before                      # config.json, log.jsonl, checkpoints, validation
    assert not staging_dir(fold).exists()               # the unfinished run is gone
    assert finished_run(fold)


def test_failed_overwrite_keeps_the_finished_run(trained_root):
    fold = _fold(trained_root)
    before = _digest(fold)
    path = R.splits_file(trained_root, DS)
    splits = json.loads(path.read_text())
    splits[0]["train"] = []
    path.write_text(json.dumps(splits))
    r = cli("train", NAME, "unet", "-c", "2d", "-f", "0", *TRAIN, "--overwrite", root=trained_root)
    assert r.exit_code == 2, r.output
    assert "empty 'train'" in one_line_error(r)
    assert _digest(fold) == before and not staging_dir(fold).exists()


def test_finished_overwrite_replaces_the_run_as_a_whole(trained_root):
    fold = _fold(trained_root)
    old_id = json.loads((fold / R.CONFIG_JSON).read_text())["run_id"]
    out = train(trained_root, _settings(epochs=2), overwrite=True)
    assert out == fold and not staging_dir(fold).exists()
    config = json.loads((fold / R.CONFIG_JSON).read_text())
    assert config["epochs"] == 2 and config["run_id"] != old_id
    assert [r["epoch"] for r in map(json.loads, (fold / R.LOG_JSONL).read_text().splitlines())] == [1, 2]
    summary = json.loads((fold / R.VALIDATION_DIR / R.SUMMARY_JSON).read_text())
    assert summary["run_id"] == config["run_id"] and finished_run(fold)


def test_bench_counts_a_fold_only_when_its_files_agree(trained_root):
    fold = _fold(trained_root)
    assert is_finished(fold)
    config = json.loads((fold / R.CONFIG_JSON).read_text())
    for edit in ({"run_id": "0" * 16, "lr": 0.5},         # another run's config beside this run's checkpoint
                 {"run_id": "", "lr": 0.5}):              # an old-style config.json that is not the checkpoint's
        (fold / R.CONFIG_JSON).write_text(json.dumps({**config, **edit}))
        assert not is_finished(fold) and not finished_run(fold)
    (fold / R.CONFIG_JSON).write_text(json.dumps(config))
    summary = json.loads((fold / R.VALIDATION_DIR / R.SUMMARY_JSON).read_text())
    (fold / R.VALIDATION_DIR / R.SUMMARY_JSON).write_text(json.dumps({**summary, "run_id": "f" * 16}))
    assert not is_finished(fold)                         # the validation of another run
    (fold / R.VALIDATION_DIR / R.SUMMARY_JSON).write_text(json.dumps(summary))
    assert is_finished(fold)


def test_continue_on_a_finished_run_is_allowed(trained_root):
    fold = _fold(trained_root)
    old_id = json.loads((fold / R.CONFIG_JSON).read_text())["run_id"]
    r = cli("train", NAME, "unet", "-c", "2d", "-f", "0", *TRAIN, "--epochs", "2", "--continue", root=trained_root)
    assert r.exit_code == 0, r.output
    config = json.loads((fold / R.CONFIG_JSON).read_text())
    assert config["epochs"] == 2 and config["run_id"] == old_id and finished_run(fold)  # the same run, further
