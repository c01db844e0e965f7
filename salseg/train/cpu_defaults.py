"""CPU-sized defaults: the CPU recipe. Plans are sized for a GPU; training on a CPU with them would take days. When
the device is a CPU, settings the user did not give explicitly are shrunk (batch size, patch size, iterations per
epoch, epochs, the unet width and a slice module's feature width) and, for the default network ``unet``, the
optimizer, learning rate and warm-up are those that converge within minutes. The values are the winner of
``benchmarks/cpu_recipe.py`` (candidates trained for the same CPU time on the knee MRI and the synthetic dataset;
the table is in docs/quickstart.md, "Training on a CPU"). The trainer logs what was changed in one line naming
the recipe and records it in config.json (``cpu_defaults_applied``, with ``recipe``: the recipe's name).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CpuRecipe:
    name: str
    optimizer: str                 # unet only: other networks keep their own recipe's optimizer
    lr: float
    weight_decay: float
    warmup_epochs: int
    batch_size: int                # an upper limit: a plans batch size below it is kept
    patch: dict = field(default_factory=dict)   # per-axis cap by dimensionality
    iters_per_epoch: int = 50
    epochs: int = 100
    unet_width: int = 16
    slice_features: int = 16       # a slice head's ConvLSTM at full resolution costs ~features^2: 64 -> 16 is 16x less


CPU_RECIPE = CpuRecipe(name="cpu-adam", optimizer="adam", lr=3e-3, weight_decay=1e-4, warmup_epochs=2,
                       batch_size=4, patch={2: 128, 3: 64}, iters_per_epoch=25, epochs=100, unet_width=16,
                       slice_features=16)

# the names earlier code and tests use
CPU_BATCH = CPU_RECIPE.batch_size
CPU_PATCH = CPU_RECIPE.patch
CPU_ITERS = CPU_RECIPE.iters_per_epoch
CPU_EPOCHS = CPU_RECIPE.epochs
CPU_UNET_WIDTH = CPU_RECIPE.unet_width
CPU_SLICE_FEATURES = CPU_RECIPE.slice_features


def cap_patch(patch: list[int], dim: int, divisor: list[int] | int = 1, caps: dict | None = None) -> list[int]:
    """Each axis capped to the CPU size, kept a multiple of the network's divisor (and at least one divisor)."""
    cap = (caps or CPU_PATCH)[dim]
    divs = divisor if isinstance(divisor, (list, tuple)) else [int(divisor)] * len(patch)
    out = []
    for p, d in zip(patch, divs):
        d = max(int(d), 1)
        c = min(int(p), cap)
        out.append(max(d, c // d * d))
    return out


def cpu_defaults(settings: dict, user_set: set[str], dim: int, *, fixed_size=None, divisor=1,
                 network: str = "", slice_module: bool = False, recipe: CpuRecipe = CPU_RECIPE) -> dict:
    """The CPU overrides for ``settings`` (batch_size, patch_size, iters_per_epoch, epochs, options.width,
    options.features and, for unet, optimizer, lr, weight_decay, warmup_epochs) that the user did not set;
    returns {name: (old, new)} of what changed (the caller applies and logs it)."""
    changed: dict = {}

    def change(name, new):
        if settings.get(name) != new:
            changed[name] = (settings.get(name), new)

    if network == "unet":  # the measured optimizer recipe; lr, weight decay, warm-up follow only its optimizer
        optimizer = settings.get("optimizer") if "optimizer" in user_set else recipe.optimizer
        if "optimizer" not in user_set:
            change("optimizer", recipe.optimizer)
        if optimizer == recipe.optimizer:
            if "lr" not in user_set:
                change("lr", recipe.lr)
            if "weight_decay" not in user_set:
                change("weight_decay", recipe.weight_decay)
            if "warmup_epochs" not in user_set and "warmup_epochs" in settings:
                change("warmup_epochs", recipe.warmup_epochs)
    if "batch_size" not in user_set and settings["batch_size"] > recipe.batch_size:
        changed["batch_size"] = (settings["batch_size"], recipe.batch_size)
    if "patch_size" not in user_set and not fixed_size:
        capped = cap_patch(settings["patch_size"], dim, divisor, recipe.patch)
        if capped != list(settings["patch_size"]):
            changed["patch_size"] = (list(settings["patch_size"]), capped)
    if "iters_per_epoch" not in user_set and settings["iters_per_epoch"] > recipe.iters_per_epoch:
        changed["iters_per_epoch"] = (settings["iters_per_epoch"], recipe.iters_per_epoch)
    if "epochs" not in user_set and settings["epochs"] > recipe.epochs:
        changed["epochs"] = (settings["epochs"], recipe.epochs)
    if network in ("unet", "resenc") and "width" not in user_set and "width" not in settings.get("options", {}):
        changed["width"] = (None, recipe.unet_width)
    if slice_module and "features" not in settings.get("options", {}):
        changed["features"] = (None, recipe.slice_features)
    return changed


def describe(changed: dict, recipe: CpuRecipe = CPU_RECIPE) -> str:
    parts = [f"{k} {old}->{new}" if old is not None else f"{k} {new}" for k, (old, new) in changed.items()]
    return (f"training on CPU: CPU-sized defaults applied, recipe {recipe.name} (" + ", ".join(parts)
            + "; set them explicitly to override)")
