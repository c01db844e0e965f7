"""What the user asked for one training run, as one typed, frozen object: ``TrainSettings``.

The CLI (``salseg train``), ``bench run`` (one template for every arm; the grid fills in network, module, fold,
position and seed) and ``quickstart`` build it; :func:`salseg.train.train` takes it. ``None`` means "not set": the
network's recipe, the CPU recipe or the plans decide (salseg.train.resolve, where the order is written). Nothing
else the trainer does changes it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from salseg.checks import finite, patch_sizes
from salseg.errors import ConfigError

# the recipe values a user may set; given() lists those that are set (not None)
RECIPE_FIELDS = ("epochs", "iters_per_epoch", "batch_size", "patch_size", "lr", "optimizer", "weight_decay",
                 "warmup_epochs", "seed", "workers", "val_every", "width", "time_budget", "augment_device")


@dataclass(frozen=True)
class TrainSettings:
    # the run: which network on which data (these name the result folder)
    dataset: str = ""
    network: str | None = None        # None: the network the plans were sized for (unet, or resenc for ResEnc plans)
    module: str = "none"
    config: str = "2d"
    fold: int | str = 0
    position: str = "head"            # where a slice module sits (salseg.nets.modules.positions)
    plans_name: str = "plans"         # the plans name in plans.json (or a preset's: plans_resencm, ...)
    device: str = "auto"
    # the recipe: None = not set by the user
    epochs: int | None = None
    iters_per_epoch: int | None = None
    batch_size: int | None = None
    patch_size: tuple[int, ...] | None = None
    lr: float | None = None
    optimizer: str | None = None
    weight_decay: float | None = None
    warmup_epochs: int | None = None
    seed: int | None = None
    workers: int | None = None
    val_every: int | None = None
    width: int | None = None
    time_budget: float | None = None   # seconds of training the epochs are fitted to
    augment_device: str | None = None  # "cpu"/"cuda": batched torch augmentation; None: batchgenerators
    options: dict = field(default_factory=dict)  # network + module options (KEY=VALUE)
    deep_supervision: bool = True
    save_probabilities: bool = False   # the final validation keeps its softmax maps (validation/<case>.npz + .json)
    keep_latest: bool = False          # keep checkpoint_latest.pt (optimizer state) after the fold finished

    def __post_init__(self):
        if self.patch_size is not None:
            object.__setattr__(self, "patch_size", patch_sizes(self.patch_size, "--patch-size"))
        object.__setattr__(self, "options", dict(self.options or {}))
        object.__setattr__(self, "position", self.position or "head")
        object.__setattr__(self, "plans_name", self.plans_name or "plans")
        for name in ("lr", "weight_decay", "time_budget"):  # NaN and inf are refused, not trained with
            if getattr(self, name) is not None:
                finite(getattr(self, name), "--" + name.replace("_", "-"))
        if self.time_budget is not None and not self.time_budget > 0:
            raise ConfigError(f"time budget must be a positive number of seconds, got {self.time_budget!r}")

    def given(self) -> dict:
        """The recipe values the user set ({name: value}), plus the options, position, plans name and deep
        supervision (always given): what wins over the recipe, the CPU defaults and the plans."""
        out = {k: getattr(self, k) for k in RECIPE_FIELDS if getattr(self, k) is not None}
        if "patch_size" in out:
            out["patch_size"] = list(out["patch_size"])
        if self.options:
            out["options"] = dict(self.options)
        out.update(position=self.position, plans_name=self.plans_name, deep_supervision=bool(self.deep_supervision))
        return out

    def replace(self, **changes) -> "TrainSettings":
        return dataclasses.replace(self, **changes)
