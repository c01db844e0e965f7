"""The trained-model contract (salseg.run): config.json's fields as written and read back, the checkpoint format,
rebuilding an ensemble from fold folders (also without the dataset's plans.json), and the typed plans reader."""

from __future__ import annotations

import json
import re

import pytest
import torch

from salseg import results
from salseg.errors import ConfigError, DataError
from salseg.plans import read_plans
from salseg.run import RunConfig, load_checkpoint, load_trained, save_checkpoint
from tests.infer.conftest import DATASET, make_plans, make_run


@pytest.fixture
def run_root(tmp_path):
    root = tmp_path / "root"
    for fold in (0, 1):
        make_run(root, fold, make_plans(), seed=fold)
    return root


def _config(root, fold=0) -> dict:
    return json.loads((results.fold_dir(root, DATASET, "unet", "none", "3d_fullres", fold) / "config.json").read_text())


def test_config_json_keeps_its_field_names_and_round_trips(run_root):
    data = _config(run_root)
    keys = list(data)
    assert "configuration" not in keys and keys[keys.index("fold") + 1] == "plans"  # the file's name, in place
    cfg = RunConfig.from_dict(data)
    assert cfg.configuration == data["plans"] == make_plans()["configurations"]["3d_fullres"]
    assert cfg.to_dict() == data and RunConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("change,message", [
    (lambda d: d.pop("plans"), "missing field 'plans'"),
    (lambda d: d.update(plans=[1]), "field 'plans' must be dict"),
    (lambda d: d.update(fold="x"), "field 'fold' must be an integer or \"all\""),
    (lambda d: d.update(num_classes=2), "field 'label_values' has 3 values but num_classes is 2"),
    (lambda d: d.update(patch_size=[8, 16]), "field 'patch_size' must hold 3 positive sizes"),
])
def test_config_json_errors_name_the_file_and_the_field(run_root, change, message):
    data = _config(run_root)
    change(data)
    with pytest.raises(ConfigError, match="^cfg\\.json: " + re.escape(message)):
        RunConfig.from_dict(data, "cfg.json")


def test_checkpoint_round_trip_and_refusals(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, model={"w": torch.arange(3.0)}, epoch=2, best_dice=None, config={"a": 1})
    ckpt = load_checkpoint(path)
    assert torch.equal(ckpt["model"]["w"], torch.arange(3.0)) and ckpt["epoch"] == 2 and ckpt["best_dice"] is None
    torch.save({"epoch": 1}, tmp_path / "no_model.pt")
    with pytest.raises(DataError, match="no_model.pt: not a salseg checkpoint"):
        load_checkpoint(tmp_path / "no_model.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(DataError, match="text.pt: not a loadable salseg checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    with pytest.raises(DataError, match="missing.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_an_ensemble_is_checked_fold_by_fold(run_root):
    t = load_trained(run_root, DATASET, "unet", "none", "3d_fullres", None, "final", None)
    assert t.fold_names == ["0", "1"] and len(t.state_dicts) == 2
    assert not torch.equal(next(iter(t.state_dicts[0].values())), next(iter(t.state_dicts[1].values())))
    assert t.plans.configuration("3d_fullres").patch_size == [8, 16, 16] and t.plans.label_values == [0, 1, 5]
    path = results.fold_dir(run_root, DATASET, "unet", "none", "3d_fullres", 1) / "config.json"
    data = json.loads(path.read_text())
    data["options"] = {"deep_supervision": False, "width": 4}
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="field 'options' differs from fold 0's"):
        load_trained(run_root, DATASET, "unet", "none", "3d_fullres", None, "final", None)
    with pytest.raises(ConfigError, match="unknown checkpoint 'last'"):
        load_trained(run_root, DATASET, "unet", "none", "3d_fullres", ["0"], "last", None)


def test_a_fold_folder_copied_alone_still_loads(run_root):
    results.plans_file(run_root, DATASET).unlink()
    t = load_trained(run_root, DATASET, "unet", "none", "3d_fullres", ["0"], "final", None)
    configuration = t.plans.configuration("3d_fullres")  # rebuilt from config.json alone
    assert configuration.spacing == [2.0, 1.0, 1.0] and t.plans.num_channels == 1 and t.plans.num_classes == 3


def test_read_plans_is_typed_and_names_the_file(run_root):
    path = results.plans_file(run_root, DATASET)
    plans = read_plans(path)
    assert plans.plans_name == "plans" and plans.configuration("3d_fullres").batch_size == 2
    assert plans.to_dict()["configurations"]["3d_fullres"]["patch_size"] == [8, 16, 16]
    with pytest.raises(ConfigError, match=r"plans\.json: no configuration '2d' in plans 'plans'; it has 3d_fullres"):
        plans.configuration("2d")
    with pytest.raises(ConfigError, match="no plans found"):
        read_plans(path.parent / "missing.json")
