"""``train``: result folder and schemas, --continue after an interruption, workers on Ctrl-C, loss decrease."""

from __future__ import annotations

import json
import multiprocessing

import numpy as np
import pytest
import torch

from salseg.run import RunConfig, build_model
from salseg.train import TrainSettings, train
from salseg.run.checkpoint import load_checkpoint
from salseg.train.data import load_case
from salseg.train.trainer import dice_per_class

from tests.train.conftest import TINY


def _records(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_result_folder_contents_and_schemas(tiny_root):
    out = train(tiny_root, TrainSettings("Tiny", "unet", config="2d", fold=0, **{**TINY, "epochs": 2, "val_every": 1}))
    assert out == tiny_root / "results" / "Dataset901_Tiny" / "unet__none__2d" / "fold_0"
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "log.jsonl", "progress.png", "checkpoint_best.pt", "checkpoint_final.pt",
            "validation"} <= names
    assert "checkpoint_latest.pt" not in names  # removed after the finish (train --keep-latest keeps it)
    assert not [n for n in names if n.startswith(".")]  # no temporaries left
    cfg = RunConfig.load(out / "config.json")
    assert (cfg.network, cfg.module, cfg.config, cfg.fold, cfg.label_values) == ("unet", "none", "2d", 0, [0, 1, 2])
    assert cfg.options["width"] == 4 and cfg.patch_size == [32, 32] and cfg.batch_size == 2
    assert cfg.configuration["patch_size"] == [32, 32] and cfg.salseg_version
    recs = _records(out)
    assert [r["epoch"] for r in recs] == [1, 2]
    for r in recs:
        assert {"epoch", "train_loss", "lr", "epoch_time", "val_dice", "mean_fg_dice"} <= set(r)
        assert set(r["val_dice"]) == {"1", "2"}
    from salseg.train.budget import PolySchedule  # the CPU recipe's warm-up + poly schedule (tested by hand there)
    assert [r["lr"] for r in recs] == pytest.approx([cfg.lr * PolySchedule(2, cfg.warmup_epochs)(e) for e in (0, 1)])
    assert (out / "progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # checkpoints load with weights_only=True and rebuild the model from config.json alone
    for name in ("checkpoint_best.pt", "checkpoint_final.pt"):  # weights only: no optimizer state
        ck = torch.load(out / name, map_location="cpu", weights_only=True)
        assert set(ck) == {"model", "epoch", "best_dice", "config", "salseg_version"}, name
        model = build_model(cfg)
        model.load_state_dict(ck["model"])
    latest = load_checkpoint(out / "checkpoint_final.pt")
    assert latest["epoch"] == 2
    best = max(r["mean_fg_dice"] for r in recs)
    assert latest["best_dice"] == pytest.approx(best)
    # the logged validation Dice is the whole-case sliding-window Dice of the final weights (epoch 2)
    from salseg.infer.predictor import predict_preprocessed
    model.load_state_dict(latest["model"])
    case = load_case(tiny_root / "preprocessed" / "Dataset901_Tiny" / "2d", "tiny_000")
    probs = predict_preprocessed(model, case.data, cfg.configuration, num_classes=3, mirroring=False, device="cpu")
    direct = dice_per_class(probs.argmax(0), case.seg, 3)
    assert [recs[1]["val_dice"][k] for k in ("1", "2")] == pytest.approx(direct, nan_ok=True)
    summary = json.loads((out / "validation" / "summary.json").read_text())
    assert [c["prediction_file"] for c in summary["metric_per_case"]] == ["tiny_000.nii.gz"]
    assert (out / "validation" / "tiny_000.nii.gz").is_file()


def test_dice_per_class_direct():
    pred = np.array([[0, 1, 1, 2]])
    ref = np.array([[-1, 1, 0, 0]])
    d = dice_per_class(pred, ref, 4)
    assert d[0] == pytest.approx(2 / 3) and d[1] == 0.0 and np.isnan(d[2])


class Stop(Exception):
    pass


def _stop_after(n):
    def hook(epoch, record):
        if epoch == n:
            raise Stop
    return hook


def test_continue_after_interruption_equals_uninterrupted(tiny_root):
    kw = {**TINY, "epochs": 4, "val_every": 2}
    ref = train(tiny_root, TrainSettings("Tiny", "unet", fold=1, **kw))
    ref_recs = _records(ref)
    ref_model = load_checkpoint(ref / "checkpoint_final.pt")["model"]
    import shutil
    shutil.rmtree(ref)
    with pytest.raises(Stop):
        train(tiny_root, TrainSettings("Tiny", "unet", fold=1, **kw), epoch_hook=_stop_after(2))
    assert [r["epoch"] for r in _records(ref)] == [1, 2] and not (ref / "checkpoint_final.pt").exists()
    out = train(tiny_root, TrainSettings("Tiny", "unet", fold=1, device="cpu"), resume=True)
    recs = _records(out)
    assert [r["epoch"] for r in recs] == [1, 2, 3, 4]
    for a, b in zip(recs, ref_recs):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["lr"] == pytest.approx(b["lr"])
        assert (a.get("mean_fg_dice") is None) == (b.get("mean_fg_dice") is None)
        if a.get("mean_fg_dice") is not None:
            assert a["mean_fg_dice"] == pytest.approx(b["mean_fg_dice"], rel=1e-4)
    final = load_checkpoint(out / "checkpoint_final.pt")["model"]
    for k in ref_model:
        assert torch.allclose(final[k].float(), ref_model[k].float(), atol=1e-5), k


def test_ctrl_c_leaves_no_worker(tiny_root):
    def progress(desc, done, total):
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_root, TrainSettings("Tiny", "unet", **{**TINY, "workers": 2, "iters_per_epoch": 20}),
              progress=progress)
    assert multiprocessing.active_children() == []


def test_slice_module_2p5d_and_loss_drops(tiny_root):
    """unet + lstmsa in 2.5d gets (B, K, C, H, W) batches; on the tiny problem the loss falls clearly."""
    torch.set_num_threads(1)
    out = train(tiny_root, TrainSettings("Tiny", "unet", "lstmsa", config="2.5d", fold=0,
                                         **{**TINY, "epochs": 6, "iters_per_epoch": 3, "val_every": 6,
                                            "batch_size": 4}, optimizer="adam", lr=1e-2, options={"features": 8}))
    cfg = RunConfig.load(out / "config.json")
    assert cfg.mode == "2.5d" and cfg.neighbours == 3 and cfg.options == {"features": 8, "width": 4}
    recs = _records(out)
    first, last = recs[0]["train_loss"], np.mean([r["train_loss"] for r in recs[-2:]])
    assert last < 0.85 * first, [r["train_loss"] for r in recs]
