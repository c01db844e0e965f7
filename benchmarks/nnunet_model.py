"""Build nnU-Net v2's trained-model folder from a salseg ``unet`` (run with nnU-Net's OWN python, never salseg's).

    /work/nnunet_venv/bin/python benchmarks/nnunet_model.py SPEC.json
    /work/nnunet_venv/bin/python benchmarks/nnunet_model.py --stages FOLDER IMAGE OUT REPEATS [WARMUP]

``benchmarks/predict_speed.py`` writes SPEC.json (and the files it names) from salseg's plans and weights and runs
this script in nnU-Net's environment; it imports torch and nnunetv2 only (no salseg). SPEC holds:

- ``results``, ``dataset`` (``DatasetXXX_Name``), ``config``, ``channel_names``, ``labels``, ``file_ending``;
- ``configuration``: salseg's plans configuration (spacing, patch size, normalisation, features, kernels, strides,
  convolutions per stage), ``median_spacing``/``median_shape``: the dataset's;
- ``weights``: salseg's unet state dict (``torch.save`` of plain tensors), ``check``: a file with a random input
  ``x`` and salseg's logits ``y`` on it.

It writes ``<results>/<dataset>/nnUNetTrainer__nnUNetPlans__<config>/{dataset.json, plans.json,
fold_0/checkpoint_final.pth}``: plans.json with nnU-Net's PlainConvUNet of the same topology, the checkpoint with
salseg's weights under nnU-Net's key names (the deep-supervision heads salseg does not have get zeros: nnU-Net
builds them always but uses only the full-resolution one at inference), then builds the network exactly as
``nnUNetv2_predict`` does (``nnUNetPredictor.initialize_from_trained_model_folder``), and prints the largest
difference between its logits and salseg's on the same input; exit 1 when it exceeds 1e-4.

``--stages``: nnU-Net's own stages of one case in one process, REPEATS times (after one warm-up): read
(SimpleITKIO), preprocess (``DefaultPreprocessor.run_case_npy``), windows (``predict_logits_from_preprocessed_data``:
sliding window with mirroring, its own thread cap), export (``export_prediction_from_logits``); prints one JSON line
per repeat (WARMUP 0: no warm-up run).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import torch

TOLERANCE = 1e-4
TRAINER, PLANS = "nnUNetTrainer", "nnUNetPlans"


def plans_json(spec: dict) -> dict:
    """nnU-Net's plans.json holding one configuration equal to salseg's."""
    c = spec["configuration"]
    dim = int(c["dim"])
    n = len(c["features_per_stage"])
    conv = f"torch.nn.modules.conv.Conv{dim}d"
    norm = f"torch.nn.modules.instancenorm.InstanceNorm{dim}d"
    resample = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
    arch = {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {"n_stages": n, "features_per_stage": c["features_per_stage"], "conv_op": conv,
                        "kernel_sizes": c["conv_kernel_sizes"], "strides": c["pool_op_kernel_sizes"],
                        "n_conv_per_stage": c.get("n_conv_per_stage", [2] * n),
                        "n_conv_per_stage_decoder": c.get("n_conv_per_stage_decoder", [2] * (n - 1)),
                        "conv_bias": True, "norm_op": norm, "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                        "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
                        "nonlin_kwargs": {"inplace": True}},
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}
    schemes = {"zscore": "ZScoreNormalization", "ct": "CTNormalization", "none": "NoNormalization"}
    conf = {"data_identifier": f"{PLANS}_{spec['config']}", "preprocessor_name": "DefaultPreprocessor",
            "batch_size": int(c["batch_size"]), "patch_size": c["patch_size"],
            "median_image_size_in_voxels": c["median_shape"], "spacing": c["spacing"],
            "normalization_schemes": [schemes[s] for s in c["normalization"]],
            "use_mask_for_norm": c["use_mask_for_norm"],
            "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_data_kwargs": resample,
            "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_seg_kwargs": {**resample, "is_seg": True, "order": 1},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {**resample, "order": 1},
            "architecture": arch, "batch_dice": False}
    return {"dataset_name": spec["dataset"], "plans_name": PLANS,
            "original_median_spacing_after_transp": spec["median_spacing"],
            "original_median_shape_after_transp": [int(round(s)) for s in spec["median_shape"]],
            "image_reader_writer": "SimpleITKIO", "transpose_forward": list(range(3)),
            "transpose_backward": list(range(3)), "configurations": {spec["config"]: conf},
            "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
            "foreground_intensity_properties_per_channel": c["intensity_properties"]}


def salseg_key(key: str, n_stages: int) -> str | None:
    """The salseg unet key holding nnU-Net PlainConvUNet's ``key`` (None: a head salseg does not have)."""
    m = re.fullmatch(r"encoder\.stages\.(\d+)\.0\.convs\.(\d+)\.(conv|norm|all_modules\.[01])\.(\w+)", key)
    if m:
        part = {"all_modules.0": "conv", "all_modules.1": "norm"}.get(m[3], m[3])
        return f"encoder.{m[1]}.{m[2]}.{part}.{m[4]}"
    m = re.fullmatch(r"decoder\.stages\.(\d+)\.convs\.(\d+)\.(conv|norm|all_modules\.[01])\.(\w+)", key)
    if m:
        part = {"all_modules.0": "conv", "all_modules.1": "norm"}.get(m[3], m[3])
        return f"decoder.{m[1]}.{m[2]}.{part}.{m[4]}"
    m = re.fullmatch(r"decoder\.transpconvs\.(\d+)\.(\w+)", key)
    if m:
        return f"up.{m[1]}.{m[2]}"
    m = re.fullmatch(r"decoder\.seg_layers\.(\d+)\.(\w+)", key)
    if m:  # nnU-Net's head j is at decoder step j (deepest first); salseg's head k at encoder stage k
        return f"seg_layers.{n_stages - 2 - int(m[1])}.{m[2]}"
    m = re.fullmatch(r"decoder\.encoder\.(.+)", key)  # the decoder's reference to the encoder: same tensors
    if m:
        return salseg_key(f"encoder.{m[1]}", n_stages)
    raise KeyError(f"no salseg counterpart for nnU-Net key {key}")


def stages(folder: str, image: str, out: str, repeats: int, warmup: int = 1) -> None:
    """Seconds per stage of nnUNetv2_predict's work on one case, in this process (see the module's docstring)."""
    import time

    from nnunetv2.inference.export_prediction import export_prediction_from_logits
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    pred = nnUNetPredictor(device=torch.device("cpu"), perform_everything_on_device=False, allow_tqdm=False)
    pred.initialize_from_trained_model_folder(folder, (0,), "checkpoint_final.pth")
    for r in range(1 - warmup, repeats + 1):
        t = {}
        t0 = time.perf_counter()
        data, props = pred.plans_manager.image_reader_writer_class().read_images([image])
        t["read"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        pre = pred.configuration_manager.preprocessor_class(verbose=False)
        data, _, props = pre.run_case_npy(data, None, props, pred.plans_manager, pred.configuration_manager,
                                          pred.dataset_json)
        t["preprocess"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        logits = pred.predict_logits_from_preprocessed_data(torch.from_numpy(data)).cpu()
        t["windows"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        export_prediction_from_logits(logits, props, pred.configuration_manager, pred.plans_manager,
                                      pred.dataset_json, out)
        t["export"] = time.perf_counter() - t0
        if r > 0:  # r == 0: the warm-up
            print(json.dumps(t), flush=True)


def main() -> None:
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    if sys.argv[1] == "--stages":
        return stages(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int((sys.argv[6:] or [1])[0]))
    spec = json.loads(Path(sys.argv[1]).read_text())
    config, c = spec["config"], spec["configuration"]
    folder = Path(spec["results"]) / spec["dataset"] / f"{TRAINER}__{PLANS}__{config}"
    (folder / "fold_0").mkdir(parents=True, exist_ok=True)
    dataset = {"channel_names": spec["channel_names"], "labels": spec["labels"], "numTraining": 1,
               "file_ending": spec["file_ending"]}
    plans = plans_json(spec)
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))

    # an nnU-Net network of this topology gives the key names and shapes
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    arch = plans["configurations"][config]["architecture"]
    net = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                 len(spec["channel_names"]), len(spec["labels"]), deep_supervision=False)
    ours = torch.load(spec["weights"], map_location="cpu", weights_only=True)
    n = len(c["features_per_stage"])
    mapped, used = {}, set()
    for key, value in net.state_dict().items():
        src = salseg_key(key, n)
        if src in ours:
            if ours[src].shape != value.shape:
                raise SystemExit(f"shape mismatch {key} {tuple(value.shape)} <- {src} {tuple(ours[src].shape)}")
            mapped[key] = ours[src].clone()
            used.add(src)
        elif key.startswith("decoder.seg_layers."):
            mapped[key] = torch.zeros_like(value)  # deep-supervision head: not used at inference
        else:
            raise SystemExit(f"salseg weights lack {src} (for nnU-Net's {key})")
    unused = sorted(set(ours) - used)
    if unused:
        raise SystemExit(f"salseg weights not mapped: {unused[:5]}")
    mirror = tuple(range(len(c["patch_size"])))
    torch.save({"network_weights": mapped, "init_args": {"configuration": config, "fold": 0},
                "trainer_name": TRAINER, "inference_allowed_mirroring_axes": mirror, "current_epoch": 1},
               folder / "fold_0" / "checkpoint_final.pth")

    # the network nnUNetv2_predict builds from this folder, against salseg's logits
    pred = nnUNetPredictor(device=torch.device("cpu"), perform_everything_on_device=False, allow_tqdm=False)
    pred.initialize_from_trained_model_folder(str(folder), (0,), "checkpoint_final.pth")
    check = torch.load(spec["check"], map_location="cpu", weights_only=True)
    with torch.inference_mode():
        y = pred.network.eval()(check["x"])
    diff = float((y - check["y"]).abs().max())
    scale = float(check["y"].abs().max())
    ok = diff <= TOLERANCE
    print(f"nnU-Net model folder {folder}: {len(mapped)} tensors from {len(ours)} salseg tensors; logits on one "
          f"random input {tuple(check['x'].shape)}: max |nnU-Net - salseg| = {diff:.2e} (logits up to {scale:.2f}) "
          f"{'OK' if ok else 'FAILED'} (tolerance {TOLERANCE})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
