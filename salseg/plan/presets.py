"""Planner presets: nnU-Net v2's default planner and its residual-encoder planners (``nnUNetPlannerResEncM/L/XL``).

A preset fixes the network the plans are sized for, the memory reference that network's feature-map count is
compared with, the GPU memory that reference corresponds to, the rule that shrinks the patch, and the batch cap:

=========== ================ ========== ============ ================== ======================= ==============
preset      plans name       network    GPU (GB)     reference 2D / 3D  shrink while            batch cap
=========== ================ ========== ============ ================== ======================= ==============
default     plans            unet       8            85e6 / 560e6       estimate*2/ref_bs > ref 5 % of dataset
resenc-m    plans_resencm    resenc     8            135e6 / 680e6      estimate > ref          100 %
resenc-l    plans_resencl    resenc     24           380e6 / 2.1e9      estimate > ref          100 %
resenc-xl   plans_resencxl   resenc     40           560e6 / 3.6e9      estimate > ref          100 %
=========== ================ ========== ============ ================== ======================= ==============

(``ref_bs`` = 12 in 2D, 2 in 3D for all of them.) The references are the values in nnU-Net 2.8's planners; a
``--gpu-memory`` other than the preset's scales them linearly, as nnU-Net's ``gpu_memory_target_in_gb`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

from salseg.errors import ConfigError

PLAIN_CONVS = 2
DEFAULT_PLANS = "plans"


@dataclass(frozen=True)
class Preset:
    name: str                     # CLI name (--preset)
    plans_name: str               # key in plans.json (--plans)
    network: str                  # the network the memory estimate models and train picks by default
    gpu_memory_gb: float          # the preset's GPU memory target
    reference_gb: float           # the memory the reference values correspond to
    reference_value: dict         # {dim: feature-map elements that fit reference_gb at the reference batch}
    shrink_at_min_batch: bool     # default planner: shrink while the estimate at batch 2 exceeds the reference
    max_dataset_covered: float    # one batch covers at most this fraction of the dataset's voxels
    nnunet_planner: str           # the nnU-Net planner class it reproduces

    def blocks(self, n_stages: int) -> dict:
        """Per-stage block / conv counts of the preset's network for ``n_stages`` stages (plans fields)."""
        if self.network == "resenc":
            from salseg.nets.resenc import RESENC_BLOCKS, RESENC_DECODER_CONVS  # defined once, with the network

            return {"n_blocks_per_stage": list(RESENC_BLOCKS[:n_stages]),
                    "n_conv_per_stage_decoder": [RESENC_DECODER_CONVS] * (n_stages - 1)}
        return {"n_conv_per_stage": [PLAIN_CONVS] * n_stages,
                "n_conv_per_stage_decoder": [PLAIN_CONVS] * (n_stages - 1)}

    def reference(self, dim: int, gpu_memory_gb: float) -> float:
        return self.reference_value[dim] * float(gpu_memory_gb) / self.reference_gb


PRESETS = {
    "default": Preset("default", DEFAULT_PLANS, "unet", 8.0, 8.0, {2: 85_000_000, 3: 560_000_000}, True, 0.05,
                      "ExperimentPlanner"),
    "resenc-m": Preset("resenc-m", "plans_resencm", "resenc", 8.0, 8.0, {2: 135_000_000, 3: 680_000_000}, False,
                       1.0, "nnUNetPlannerResEncM"),
    "resenc-l": Preset("resenc-l", "plans_resencl", "resenc", 24.0, 24.0, {2: 380_000_000, 3: 2_100_000_000},
                       False, 1.0, "nnUNetPlannerResEncL"),
    "resenc-xl": Preset("resenc-xl", "plans_resencxl", "resenc", 40.0, 40.0, {2: 560_000_000, 3: 3_600_000_000},
                        False, 1.0, "nnUNetPlannerResEncXL"),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"unknown planner preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
