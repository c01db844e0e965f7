"""ONNX (salseg.run.onnx, ``export-model --onnx``, ``predict --backend onnxruntime``): logits within 1e-4 of torch
on real windows and identical label maps, for a tiny 3D unet and a tiny 2.5d slice-module model; a diffusion
network is refused at export time, naming why."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from salseg import results
from tests.infer.test_model_package import cli, ok, outputs

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: the ONNX backend is not tested")

DATASET = "Dataset901_InferToy"  # as in conftest.py
# ../shared/data next to the repo (SALSEG_SHARED_DATA overrides, e.g. from a git worktree elsewhere)
DATA = Path(os.environ.get("SALSEG_SHARED_DATA") or Path(__file__).resolve().parents[2].parent / "shared" / "data")
SPINE_CT = DATA / "spine" / "sample_ct"
FAST = ["--device", "cpu", "-q", "--save-probabilities"]


def make_2d_run(root: Path, network: str, module: str, config: str, options: dict) -> None:
    """A trained-looking 2d / 2.5d run (random weights) of a 1-channel, 3-class dataset."""
    from salseg.run import RunConfig, build_model
    from salseg.run.checkpoint import save_checkpoint

    conf = {"dim": 2, "data_identifier": "2d", "spacing": [1.0, 1.0], "patch_size": [16, 16],
            "median_shape": [20, 20], "batch_size": 2, "normalization": ["zscore"], "intensity_properties": {},
            "pool_op_kernel_sizes": [[1, 1], [2, 2]], "conv_kernel_sizes": [[3, 3], [3, 3]],
            "features_per_stage": [4, 8], **({"neighbours": 3} if config == "2.5d" else {})}
    cfg = RunConfig(dataset=DATASET, network=network, module=module, config=config, fold=0, configuration=conf,
                    label_values=[0, 1, 5], in_channels=1, num_classes=3, dim=2,
                    mode="2.5d" if config == "2.5d" else "2d", neighbours=3 if config == "2.5d" else 1,
                    data_identifier="2d", file_ending=".nii.gz", epochs=1, iters_per_epoch=1, batch_size=2,
                    patch_size=[16, 16], lr=0.01, optimizer="sgd", weight_decay=0.0, options=options,
                    deep_supervision=False)
    fdir = results.fold_dir(root, DATASET, network, module, config, 0)
    fdir.mkdir(parents=True)
    cfg.save(fdir / results.CONFIG_JSON)
    torch.manual_seed(1)
    model = build_model(cfg)
    save_checkpoint(fdir / results.CHECKPOINT_FINAL, model=model.state_dict())


def real_inputs(tmp_path, toy_root) -> Path:
    """The toy test images and, where ../shared/data is present, the real spine CT (oblique, HU)."""
    folder = tmp_path / "in"
    folder.mkdir()
    for p in (results.raw_dir(toy_root, DATASET) / "imagesTs").iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    ct = sorted(SPINE_CT.glob("*_ct.nii.gz")) if SPINE_CT.is_dir() else []
    if ct:  # a block from its middle (oblique geometry kept): real windows, a few seconds
        import SimpleITK as sitk

        img = sitk.ReadImage(str(ct[0]))
        sitk.WriteImage(img[25:45, 15:30, 30:40], str(folder / "spine_0000.nii.gz"))
    return folder


def window_parity(zip_path: Path, images: Path) -> float:
    """max |ONNX - torch| logits over real windows (tiles of a preprocessed input, every fold)."""
    from salseg.dataset.io import read_images
    from salseg.infer.predictor import Predictor, neighbour_indices
    from salseg.preprocess import preprocess_case
    from salseg.run.onnx import _Logits

    torch_pred = Predictor.from_model(zip_path, device="cpu")
    onnx_pred = Predictor.from_model(zip_path, device="cpu", backend="onnxruntime")
    conf = torch_pred.plans.configuration(torch_pred.config_name)
    patch = list(conf.patch_size)
    worst = 0.0
    for f in sorted(images.iterdir()):
        data, props = read_images([f])
        x, _, _ = preprocess_case(data, props, torch_pred.plans, torch_pred.config_name)
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if len(patch) == 3:
            x = torch.nn.functional.pad(x, [0, max(0, patch[2] - x.shape[3]), 0, max(0, patch[1] - x.shape[2]),
                                            0, max(0, patch[0] - x.shape[1])])
            tiles = torch.stack([x[:, z:z + patch[0], :patch[1], :patch[2]] for z in (0, x.shape[1] - patch[0])])
        else:
            x = torch.nn.functional.pad(x, [0, max(0, patch[1] - x.shape[3]), 0, max(0, patch[0] - x.shape[2])])
            z = x.shape[1]
            k = onnx_pred.sessions[0].capabilities.slice_k
            if k:
                idx = torch.from_numpy(neighbour_indices(z, k))[[0, z // 2, z - 1]]  # (3, K) with clamped edges
                tiles = x[:, idx, :patch[0], :patch[1]].permute(1, 2, 0, 3, 4)    # (3, K, C, h, w)
            else:
                tiles = x[:, [0, z // 2, z - 1], :patch[0], :patch[1]].transpose(0, 1)
        for i, state in enumerate(torch_pred.state_dicts):
            torch_pred.model.load_state_dict(state)
            with torch.no_grad():
                ref = _Logits(torch_pred.model.eval())(tiles)
            got = onnx_pred.sessions[i](tiles)
            worst = max(worst, float((got - ref).abs().max()))
    return worst


def both_backends(root, zip_path, images, tmp_path):
    a, b = tmp_path / "torch", tmp_path / "onnx"
    ok(root, "predict", "--model", str(zip_path), "-i", str(images), "-o", str(a), *FAST)
    text = ok(root, "predict", "--model", str(zip_path), "-i", str(images), "-o", str(b), "--backend",
              "onnxruntime", *FAST)
    assert "backend onnxruntime" in " ".join(text.split())
    ta, tb = outputs(a), outputs(b)
    assert sorted(ta) == sorted(tb)
    for k in ta:
        if k.endswith(".npz"):
            np.testing.assert_allclose(tb[k], ta[k], atol=1e-4, err_msg=k)
        else:
            np.testing.assert_array_equal(tb[k], ta[k], err_msg=k)
    return ta


def test_onnx_3d_unet_parity(toy_root, tmp_path):
    zip_path = tmp_path / "m.zip"
    text = ok(toy_root, "export-model", DATASET, "unet", "-c", "3d_fullres", "-o", str(zip_path), "--onnx")
    assert "ONNX opset 17" in text
    with zipfile.ZipFile(zip_path) as z:
        manifest = json.loads(z.read("salseg-model.json"))
        assert {"fold_0/model.onnx", "fold_1/model.onnx"} <= set(z.namelist())
    assert manifest["onnx"]["opset"] == 17 and manifest["onnx"]["input_shape"] == ["batch", 1, 8, 16, 16]
    images = real_inputs(tmp_path, toy_root)
    assert window_parity(zip_path, images) < 1e-4
    got = both_backends(toy_root, zip_path, images, tmp_path)
    assert all(got[k].std() > 1e-3 for k in got if k.endswith(".npz"))


def test_onnx_slice_model_parity(toy_root, tmp_path):
    make_2d_run(toy_root, "unet", "lstmsa", "2.5d", {"features": 4})
    zip_path = tmp_path / "slice.zip"
    ok(toy_root, "export-model", DATASET, "unet", "-m", "lstmsa", "-c", "2.5d", "-o", str(zip_path), "--onnx")
    with zipfile.ZipFile(zip_path) as z:
        info = json.loads(z.read("salseg-model.json"))["onnx"]
    assert info["slice_k"] == 3 and info["input_shape"] == ["batch", 3, 1, 16, 16]
    images = real_inputs(tmp_path, toy_root)
    assert window_parity(zip_path, images) < 1e-4
    got = both_backends(toy_root, zip_path, images, tmp_path)
    assert all(got[k].std() > 1e-3 for k in got if k.endswith(".npz"))  # probabilities that vary: not vacuous


def test_onnx_refusals(toy_root, tmp_path):
    make_2d_run(toy_root, "medsegdiff", "none", "2d", {"width": 4})
    out = tmp_path / "diff.zip"
    code, text = cli(toy_root, "export-model", DATASET, "medsegdiff", "-c", "2d", "-o", str(out), "--onnx")
    assert code == 2 and "cannot be exported to ONNX" in text and "diffusion" in text, text
    assert not out.exists()
    plain = tmp_path / "plain.zip"  # a package without graphs: --backend onnxruntime says how to get them
    ok(toy_root, "export-model", DATASET, "unet", "-c", "3d_fullres", "-o", str(plain))
    code, text = cli(toy_root, "predict", "--model", str(plain), "-i", str(tmp_path), "-o", str(tmp_path / "o"),
                     "--backend", "onnxruntime", "--device", "cpu")
    assert code == 2 and "--onnx" in text and not (tmp_path / "o").exists(), text


def test_each_backend_reads_and_verifies_only_what_it_runs(toy_root, tmp_path):
    """Prediction reads, hashes and parses the files its backend runs: a changed byte in the weights stops the torch
    backend (naming weights.npz) and not the ONNX one, a changed ONNX graph the reverse; nothing written when
    refused. install-model reads everything, so it refuses both."""
    from tests.infer.test_model_package import _rewrite

    zip_path = tmp_path / "m.zip"
    ok(toy_root, "export-model", DATASET, "unet", "-c", "3d_fullres", "-f", "0", "-o", str(zip_path), "--onnx")
    images = tmp_path / "in"
    images.mkdir()
    first = sorted((results.raw_dir(toy_root, DATASET) / "imagesTs").iterdir())[0]
    (images / first.name).write_bytes(first.read_bytes())
    with zipfile.ZipFile(zip_path) as z:
        weights, graph = z.read("fold_0/weights.npz"), z.read("fold_0/model.onnx")
    def flipped(data: bytes) -> bytes:  # one byte in the middle changed
        i = len(data) // 2
        return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]

    bad_weights = _rewrite(zip_path, tmp_path / "bw.zip", change=("fold_0/weights.npz", flipped(weights), False))
    bad_graph = _rewrite(zip_path, tmp_path / "bg.zip", change=("fold_0/model.onnx", flipped(graph), False))
    ok(toy_root, "predict", "--model", str(zip_path), "-i", str(images), "-o", str(tmp_path / "ref"), *FAST,
       "--backend", "onnxruntime")
    for pkg, refused, fine in ((bad_weights, "torch", "onnxruntime"), (bad_graph, "onnxruntime", "torch")):
        out = tmp_path / f"{pkg.stem}_{refused}"
        code, text = cli(toy_root, "predict", "--model", str(pkg), "-i", str(images), "-o", str(out), *FAST,
                         "--backend", refused)
        name = "weights.npz" if refused == "torch" else "model.onnx"
        assert code == 2 and f"fold_0/{name} does not match its SHA-256" in " ".join(text.split()), text
        assert not out.exists()
        out = tmp_path / f"{pkg.stem}_{fine}"
        ok(toy_root, "predict", "--model", str(pkg), "-i", str(images), "-o", str(out), *FAST, "--backend", fine)
        if fine == "onnxruntime":
            ref, got = outputs(tmp_path / "ref"), outputs(out)
            assert sorted(ref) == sorted(got) and all(np.array_equal(ref[k], got[k]) for k in ref)
        code, text = cli(tmp_path / "fresh_root", "install-model", str(pkg))
        assert code == 2 and "does not match its SHA-256" in text, text
