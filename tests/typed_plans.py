"""Typed plans (salseg.plans.Plans) for tests that need only a few fields: the other required fields of a
configuration get neutral values (one stage, stride 1), and the result is validated like a plans.json."""

from __future__ import annotations

from salseg.plans import Plans


def make_plans(configurations: dict[str, dict], label_values, num_channels: int = 1, seed: int = 0,
               **extra) -> Plans:
    """``configurations``: name -> the fields a test sets (``dim``, ``spacing``, ``normalization``, ...);
    ``extra``: more top-level fields (``label_spec``, ...)."""
    confs = {}
    for name, given in configurations.items():
        dim = int(given["dim"])
        confs[name] = {"data_identifier": "3d_fullres" if dim == 3 else "2d", "patch_size": [16] * dim,
                       "median_shape": [16.0] * dim, "batch_size": 2, "intensity_properties": {},
                       "pool_op_kernel_sizes": [[1] * dim], "conv_kernel_sizes": [[3] * dim],
                       "features_per_stage": [8], **given}
    values = [int(v) for v in label_values]
    return Plans.from_dict({"dataset_name": "Dataset999_Test", "num_channels": num_channels,
                            "num_classes": len(values), "labels": {str(v): v for v in values},
                            "label_values": values, "seed": seed, "configurations": confs, **extra}, "test plans")
