"""The run configuration (``config.json`` of a result folder): everything needed to rebuild the model and redo the run.

``RunConfig.load(path)`` validates every field with a message naming the file and the field;
:func:`salseg.run.model.build_model` rebuilds the network exactly as it was trained. How the values are chosen (user
settings, the network's recipe, CPU defaults, plans) is the trainer's business (``salseg.train``), not this file's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from salseg.errors import ConfigError, SalsegError
from salseg.fileio import read_json, write_json

CONFIG_DIMS = {"2d": 2, "2.5d": 2, "3d_fullres": 3}
OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass(frozen=True)
class RunConfig:  # frozen: a trainer's later changes make a new one (salseg.train.resolve.revise)
    dataset: str
    network: str
    module: str
    config: str                      # plans configuration name: 2d, 2.5d or 3d_fullres
    fold: int | str                  # 0..4 or "all"
    configuration: dict              # the plans configuration as trained (patch size / topology after overrides);
                                     # config.json calls this field "plans" (JSON_NAMES)
    label_values: list[int]          # classes: network output channel i <-> label value label_values[i]
    in_channels: int
    num_classes: int
    dim: int                         # network dimensionality (2 for 2d and 2.5d)
    mode: str                        # sampler mode: "2d", "2.5d" (K slices -> slice model) or "3d"
    neighbours: int                  # K slices fed to a slice model (1 when mode != "2.5d")
    data_identifier: str             # preprocessed folder the cases come from
    file_ending: str                 # raw dataset's file ending (validation exports)
    epochs: int
    iters_per_epoch: int
    batch_size: int
    patch_size: list[int]
    lr: float
    optimizer: str
    weight_decay: float
    momentum: float = 0.99
    nesterov: bool = True            # SGD with Nesterov momentum (the network's recipe; Swin-Unet: plain)
    seed: int = 0
    device: str = "cpu"
    workers: int = 0
    val_every: int = 1
    options: dict = field(default_factory=dict)   # network + module options (width, features, ...)
    position: str = "head"
    grad_clip: float = 12.0
    oversample_foreground: float = 1 / 3
    salseg_version: str = ""
    cpu_defaults_applied: dict = field(default_factory=dict)
    world_size: int = 1
    resumed: list = field(default_factory=list)   # --continue changes of epochs (salseg.train.resume)
    deep_supervision: bool = True    # as applied: the built model has auxiliary low-resolution outputs
    protocol: dict = field(default_factory=dict)  # the training recipe without the module (salseg.train.protocol)
    protocol_hash: str = ""          # salseg.protocol.protocol_hash(protocol)
    augment_device: str = ""          # "" = batchgenerators in the loader workers; "cpu"/"cuda": batched torch
    validation: dict = field(default_factory=dict)  # how the in-training estimate and the final validation are made
    warmup_epochs: int = 0                       # linear warm-up epochs before the poly decay
    time_budget: float | None = None             # seconds of training the epochs were fitted to (None: no budget)
    epochs_planned: int | None = None            # the epoch limit a budget fits under (--epochs; None: budget only)
    epochs_chosen: int | None = None             # the epochs the budget fitted (None without a budget)
    label_spec: dict = field(default_factory=dict)  # regions / ignore label (LabelSpec.to_json); {} = plain classes
    save_probabilities: bool = False  # the final validation also keeps <case>.npz + <case>.json probabilities
    run_id: str = ""                  # one id per run, also in the checkpoints and validation/summary.json
    closing_validation: dict = field(default_factory=dict)  # under a time budget: its mirror axes, estimate, time

    @property
    def labels(self):
        """The :class:`~salseg.dataset.labels.LabelSpec` of the run (regions: one output channel per region)."""
        return self._labels("config.json")

    def _labels(self, source: str):
        from salseg.dataset.labels import label_spec_of

        return label_spec_of({"label_spec": self.label_spec or None, "label_values": self.label_values}, source)

    # ----------------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """config.json's content (field order as declared; ``configuration`` under its file name ``plans``)."""
        return {JSON_NAMES.get(k, k): v for k, v in dataclasses.asdict(self).items()}

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: Any, source: str = "config.json") -> "RunConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        data = {FIELD_NAMES.get(k, k): v for k, v in data.items()}
        kwargs = {}
        if "deep_supervision" not in data and isinstance(data.get("module"), str):
            opts = data.get("options") if isinstance(data.get("options"), dict) else {}
            legacy = opts.get("deep_supervision", _legacy_deep_supervision(data["module"]))
            data = dict(data, deep_supervision=bool(legacy))
        for f in dataclasses.fields(cls):
            if f.name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise ConfigError(f"{source}: missing field {JSON_NAMES.get(f.name, f.name)!r}")
                continue
            kwargs[f.name] = _check_field(f.name, data[f.name], source)
        cfg = cls(**kwargs)
        cfg.validate(source)
        return cfg

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        return cls.from_dict(read_json(path), str(path))

    def validate(self, source: str = "config.json") -> None:
        def bad(name, why):
            raise ConfigError(f"{source}: field {name!r} {why}")

        if self.config not in CONFIG_DIMS:
            bad("config", f"must be one of {', '.join(CONFIG_DIMS)}, got {self.config!r}")
        if self.dim not in (2, 3):
            bad("dim", f"must be 2 or 3, got {self.dim}")
        if self.mode not in ("2d", "2.5d", "3d"):
            bad("mode", f"must be 2d, 2.5d or 3d, got {self.mode!r}")
        if not (self.fold == "all" or (isinstance(self.fold, int) and self.fold >= 0)):
            bad("fold", f"must be a fold number >= 0 or 'all', got {self.fold!r}")
        if self.optimizer not in OPTIMIZERS:
            bad("optimizer", f"must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        for name in ("in_channels", "num_classes", "epochs", "iters_per_epoch", "batch_size", "val_every",
                     "neighbours"):
            if getattr(self, name) < 1:
                bad(name, f"must be >= 1, got {getattr(self, name)}")
        spec = self._labels(source)
        if list(spec.label_values) != list(self.label_values):
            bad("label_values", f"has {len(self.label_values)} values {self.label_values} but label_spec declares "
                                f"{list(spec.label_values)}")
        if spec.has_regions and self.num_classes != spec.num_outputs:
            bad("num_classes", f"is {self.num_classes} but the run has {len(spec.regions)} regions")
        if not spec.has_regions and self.num_classes != len(self.label_values):
            bad("label_values", f"has {len(self.label_values)} values but num_classes is {self.num_classes}")
        if len(self.patch_size) != self.dim or any(p < 1 for p in self.patch_size):
            bad("patch_size", f"must hold {self.dim} positive sizes, got {self.patch_size}")
        if self.lr <= 0:
            bad("lr", f"must be > 0, got {self.lr}")
        if self.seed < 0:
            bad("seed", f"must be >= 0, got {self.seed}")
        if self.workers < 0:
            bad("workers", f"must be >= 0, got {self.workers}")
        if self.augment_device not in ("", "cpu", "cuda"):
            bad("augment_device", f"must be cpu or cuda (or empty), got {self.augment_device!r}")
        if self.warmup_epochs < 0:
            bad("warmup_epochs", f"must be >= 0, got {self.warmup_epochs}")
        if self.time_budget is not None and self.time_budget <= 0:
            bad("time_budget", f"must be > 0 seconds or null, got {self.time_budget}")
        from salseg.nets.modules.positions import POSITIONS

        if self.position not in POSITIONS:
            bad("position", f"must be one of {', '.join(POSITIONS)}, got {self.position!r}")
        from salseg.safepath import check_file_ending, check_name

        check_file_ending(self.file_ending, source)  # these become parts of paths: no '..', no separators
        for name in ("dataset", "network", "module", "data_identifier"):
            check_name(getattr(self, name), source, name)


JSON_NAMES = {"configuration": "plans"}  # field -> its name in config.json (kept: files stay readable both ways)
FIELD_NAMES = {v: k for k, v in JSON_NAMES.items()}

_TYPES = {
    "dataset": str, "network": str, "module": str, "config": str, "configuration": dict, "label_values": list,
    "in_channels": int, "num_classes": int, "dim": int, "mode": str, "neighbours": int, "data_identifier": str,
    "file_ending": str, "epochs": int, "iters_per_epoch": int, "batch_size": int, "patch_size": list,
    "lr": float, "optimizer": str, "weight_decay": float, "momentum": float, "nesterov": bool, "seed": int, "device": str,
    "workers": int, "val_every": int, "options": dict, "position": str, "grad_clip": float,
    "oversample_foreground": float, "salseg_version": str, "cpu_defaults_applied": dict, "world_size": int,
    "resumed": list,
    "deep_supervision": bool, "protocol": dict, "protocol_hash": str,
    "augment_device": str, "validation": dict,
    "warmup_epochs": int, "time_budget": float, "epochs_planned": int, "epochs_chosen": int, "label_spec": dict,
    "save_probabilities": bool, "run_id": str, "closing_validation": dict,
}
_OPTIONAL = {"time_budget", "epochs_planned", "epochs_chosen"}  # null allowed


def _check_field(name: str, value: Any, source: str) -> Any:
    if name == "fold":
        if value == "all" or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise ConfigError(f"{source}: field 'fold' must be an integer or \"all\", got {value!r}")
    want = _TYPES[name]
    if value is None and name in _OPTIONAL:
        return None
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, want) or (want is int and isinstance(value, bool)):
        raise ConfigError(f"{source}: field {JSON_NAMES.get(name, name)!r} must be {want.__name__}, got "
                          f"{type(value).__name__} ({value!r})")
    if name in ("label_values", "patch_size") and not all(isinstance(v, int) for v in value):
        raise ConfigError(f"{source}: field {name!r} must be a list of integers, got {value!r}")
    return value


def _legacy_deep_supervision(module: str) -> bool:
    """What a config.json written before the ``deep_supervision`` field was built with: the network's default
    (on) for a plain or attention-module network; slice-module backbones were always built without it."""
    from salseg.nets import get_module

    try:
        return get_module(module).kind != "slice"
    except SalsegError:  # an unknown plug-in module: build_model names it
        return True
