"""Planner presets (nnU-Net's default and ResEnc planners): feature-map estimates by hand, padding up to the stride,
nnU-Net's plans for the knee geometry, named plans side by side in plans.json, the CLI."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from salseg.errors import ConfigError
from salseg.fileio import read_json
from salseg.plan import plan_dataset
from salseg.plans import load_plans, plans_names
from salseg.plan import topology as topo
from salseg.plan.planner import nnunet_transpose, patch_and_batch
from salseg.plan.presets import PRESETS, get_preset

from tests.plan.rawdata_helpers import blob_case, write_raw_dataset


def test_feature_map_counts_by_hand():
    """2 stages, patch 8x8, features 32/64, 3 classes, no deep supervision (how nnU-Net's planner builds them);
    the same two numbers nnU-Net's compute_conv_feature_map_size gives (12480, 15552)."""
    pools, feats = [[1, 1], [2, 2]], [32, 64]
    plain = topo.plain_unet_elements([8, 8], pools, feats, 3)
    assert plain == (2 * 32 * 64 + 2 * 64 * 16) + (3 * 32 * 64 + 3 * 64) == 12480
    # stem 32*64; stage 0: one block, 2 convs, identity skip; stage 1: 2 blocks + the strided block's projection
    res = topo.resenc_unet_elements([8, 8], pools, feats, 3, blocks=[1, 2], convs_decoder=1)
    assert res == 32 * 64 + 2 * 32 * 64 + (4 * 64 * 16 + 64 * 16) + (2 * 32 * 64 + 3 * 64) == 15552
    # with deep supervision every decoder stage has a head (the earlier salseg estimate)
    assert topo.plain_unet_elements([8, 8], pools, feats, 3, deep_supervision=True) == plain


def test_patch_padded_up_to_the_stride():
    assert topo.pad_to_stride([96.5, 96, 97], [32, 32, 32]) == [128, 96, 128]
    assert topo.pad_to_stride([103.5, 5], [8, 1]) == [104, 5]


KNEE_2D = dict(spacing=[1.0, 1.0], median=[104.0, 240.0])
KNEE_3D = dict(spacing=[1.0, 1.0, 1.0], median=[160.0, 104.0, 240.0])
KNEE_VOX = 160 * 104 * 240 * 5.0


@pytest.mark.parametrize("preset,geo,patch,batch", [
    ("default", KNEE_2D, [112, 256], 35), ("default", KNEE_3D, [128, 96, 192], 2),
    ("resenc-m", KNEE_2D, [112, 256], 113), ("resenc-m", KNEE_3D, [128, 96, 192], 2),
    ("resenc-l", KNEE_2D, [112, 256], 319), ("resenc-l", KNEE_3D, [160, 112, 256], 3)])
def test_nnunet_plans_of_the_knee_geometry(preset, geo, patch, batch):
    """nnU-Net 2.8.1's plans for the knee data (5 cases, 160x104x240 at 1 mm, 3 labels), as measured by
    benchmarks/plan_parity.py; salseg's earlier 2d plan was [96, 224] / 46."""
    pb = patch_and_batch(geo["spacing"], geo["median"], KNEE_VOX, 1, 3, preset=preset)
    assert (pb["patch_size"], pb["batch_size"]) == (patch, batch)
    dim = len(patch)
    assert pb["pool_op_kernel_sizes"][-1] == ([1, 2] if dim == 2 else [2, 1, 2])
    n = len(pb["pool_op_kernel_sizes"])
    if preset == "default":
        assert pb["n_conv_per_stage"] == [2] * n and "n_blocks_per_stage" not in pb
    else:
        assert pb["n_blocks_per_stage"] == [1, 3, 4, 6, 6, 6][:n] and pb["n_conv_per_stage_decoder"] == [1] * (n - 1)


def test_preset_rules():
    m, l_, d = get_preset("resenc-m"), get_preset("resenc-l"), get_preset("default")
    assert (m.gpu_memory_gb, l_.gpu_memory_gb, get_preset("resenc-xl").gpu_memory_gb) == (8, 24, 40)
    assert d.max_dataset_covered == 0.05 and m.max_dataset_covered == 1.0
    assert m.reference(2, 16.0) == 2 * 135_000_000
    # ResEnc: the batch is not capped at 5 % (here 5 % of the dataset would be 2 patches)
    vox = 64 * 64 * 40.0
    assert patch_and_batch([1.0, 1.0], [64, 64], vox, 1, 2, preset="default")["batch_size"] == 2
    assert patch_and_batch([1.0, 1.0], [64, 64], vox, 1, 2, preset="resenc-m")["batch_size"] == 40
    with pytest.raises(ConfigError, match="unknown planner preset 'resenc-s'"):
        get_preset("resenc-s")
    assert nnunet_transpose([1.0, 3.0, 1.0]) == [1, 0, 2] and nnunet_transpose([1.0, 1.0, 1.0]) == [0, 1, 2]
    assert {p.plans_name for p in PRESETS.values()} == {"plans", "plans_resencm", "plans_resencl",
                                                         "plans_resencxl"}


@pytest.fixture
def mri(tmp_path):
    rng = np.random.default_rng(3)
    cases = [blob_case(f"c{i}", (12, 40, 44), (3.0, 1.0, 1.0), rng) for i in range(3)]
    write_raw_dataset(tmp_path, "Mri", cases, labels={"background": 0, "a": 1, "b": 2}, dataset_id=31)
    return tmp_path


def test_named_plans_live_side_by_side(mri):
    root = mri
    default = plan_dataset(root, "Mri")
    path = root / "preprocessed" / "Dataset031_Mri" / "plans.json"
    before = read_json(path)
    m = plan_dataset(root, "Mri", preset="resenc-m")
    after = read_json(path)
    # the top level (what every reader reads) is untouched; the new plans sit under named_plans
    assert {k: v for k, v in after.items() if k != "named_plans"} == before == default
    assert plans_names(after) == ["plans", "plans_resencm"]
    assert m["plans_name"] == "plans_resencm" and m["network"] == "resenc" and m["preset"] == "resenc-m"
    assert load_plans(root, "Mri", "plans_resencm").to_dict() == m
    assert load_plans(root, "Mri").to_dict() == default and default["network"] == "unet"
    c = m["configurations"]["3d_fullres"]
    assert c["n_blocks_per_stage"] == [1, 3, 4, 6, 6, 6][:len(c["pool_op_kernel_sizes"])]
    assert c["data_identifier"] == "3d_fullres"  # the same preprocessed data as the default plans
    # re-planning the default keeps the named plans (same fingerprint)
    plan_dataset(root, "Mri")
    assert plans_names(read_json(path)) == ["plans", "plans_resencm"]
    with pytest.raises(ConfigError, match="no plans named 'plans_resencl'.*planned: plans, plans_resencm"):
        load_plans(root, "Mri", "plans_resencl")
    # a broken named plans is reported with its name
    bad = read_json(path)
    bad["named_plans"]["plans_resencm"]["configurations"]["2d"]["batch_size"] = 0
    path.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="batch_size.*named_plans.plans_resencm"):
        load_plans(root, "Mri")


def test_named_plans_alone_write_the_default_and_a_new_fingerprint_drops_them(mri, caplog):
    root = mri
    plan_dataset(root, "Mri", preset="resenc-l", configs=["2d"])
    path = root / "preprocessed" / "Dataset031_Mri" / "plans.json"
    plans = read_json(path)
    assert plans_names(plans) == ["plans", "plans_resencl"] and plans["preset"] == "default"
    assert set(plans["configurations"]) == {"2d", "2.5d", "3d_fullres"}  # the default plans are complete
    assert set(plans["named_plans"]["plans_resencl"]["configurations"]) == {"2d"}
    # a changed dataset (different fingerprint): the old named plans are dropped, with a warning
    rng = np.random.default_rng(9)
    write_raw_dataset(root, "Mri", [blob_case(f"c{i}", (12, 40, 44), (3.0, 1.0, 1.0), rng) for i in range(3)],
                      labels={"background": 0, "a": 1, "b": 2}, dataset_id=31)
    plan_dataset(root, "Mri")
    assert plans_names(read_json(path)) == ["plans"]
    assert "fingerprint changed" in caplog.text


def test_cli_preset(mri):
    from salseg_cli.main import app

    r = CliRunner().invoke(app, ["--root", str(mri), "plan", "Mri", "--preset", "resenc-m", "--configs", "2d"])
    assert r.exit_code == 0, r.output
    assert "plans_resencm" in r.output and "resenc" in r.output
    r = CliRunner().invoke(app, ["--root", str(mri), "plan", "Mri", "--preset", "huge"])
    assert r.exit_code == 2 and "unknown planner preset 'huge'" in r.output


def test_plan_parity_benchmark_without_nnunet(tmp_path, monkeypatch, capsys):
    """benchmarks/plan_parity.py prints salseg's side and says that nnU-Net was skipped when it is absent."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "plan_parity.py"
    spec = importlib.util.spec_from_file_location("plan_parity", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "FALLBACK_BIN", tmp_path / "no_nnunet")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    rng = np.random.default_rng(4)
    folder = write_raw_dataset(tmp_path / "src", "Tiny", [blob_case(f"c{i}", (8, 32, 36), (2.0, 1.0, 1.0), rng)
                                                          for i in range(3)], dataset_id=77)
    assert mod.main(["--dataset", str(folder), "--workdir", str(tmp_path / "work")]) == 0
    out = capsys.readouterr().out
    assert "nnU-Net: skipped" in out and "nothing compared" in out
    assert "resenc-l  3d_fullres  blocks/stage" in out
