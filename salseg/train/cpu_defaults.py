"""CPU-sized defaults. Plans are sized for a GPU; training on a CPU with them would take days. When the device is a
CPU, settings the user did not give explicitly are shrunk: batch size, patch size, iterations per epoch, epochs, the
unet width and a slice module's feature width. The trainer logs what was changed in one line and records it
in config.json."""

from __future__ import annotations

CPU_BATCH = 4
CPU_PATCH = {2: 128, 3: 64}
CPU_ITERS = 50
CPU_EPOCHS = 100
CPU_UNET_WIDTH = 16
CPU_SLICE_FEATURES = 16   # a slice head's ConvLSTM at full resolution costs ~features^2: 64 -> 16 is 16x cheaper


def cap_patch(patch: list[int], dim: int, divisor: list[int] | int = 1) -> list[int]:
    """Each axis capped to the CPU size, kept a multiple of the network's divisor (and at least one divisor)."""
    divs = divisor if isinstance(divisor, (list, tuple)) else [int(divisor)] * len(patch)
    out = []
    for p, d in zip(patch, divs):
        d = max(int(d), 1)
        c = min(int(p), CPU_PATCH[dim])
        out.append(max(d, c // d * d))
    return out


def cpu_defaults(settings: dict, user_set: set[str], dim: int, *, fixed_size=None, divisor=1,
                 network: str = "", slice_module: bool = False) -> dict:
    """The CPU overrides for ``settings`` (batch_size, patch_size, iters_per_epoch, epochs, options.width,
    options.features) that the user did not set; returns {name: (old, new)} of what changed (the caller applies
    and logs it)."""
    changed: dict = {}
    if "batch_size" not in user_set and settings["batch_size"] > CPU_BATCH:
        changed["batch_size"] = (settings["batch_size"], CPU_BATCH)
    if "patch_size" not in user_set and not fixed_size:
        capped = cap_patch(settings["patch_size"], dim, divisor)
        if capped != list(settings["patch_size"]):
            changed["patch_size"] = (list(settings["patch_size"]), capped)
    if "iters_per_epoch" not in user_set and settings["iters_per_epoch"] > CPU_ITERS:
        changed["iters_per_epoch"] = (settings["iters_per_epoch"], CPU_ITERS)
    if "epochs" not in user_set and settings["epochs"] > CPU_EPOCHS:
        changed["epochs"] = (settings["epochs"], CPU_EPOCHS)
    if network in ("unet", "resenc") and "width" not in user_set and "width" not in settings.get("options", {}):
        changed["width"] = (None, CPU_UNET_WIDTH)
    if slice_module and "features" not in settings.get("options", {}):
        changed["features"] = (None, CPU_SLICE_FEATURES)
    return changed


def describe(changed: dict) -> str:
    parts = [f"{k} {old}->{new}" if old is not None else f"{k} {new}" for k, (old, new) in changed.items()]
    return "training on CPU: CPU-sized defaults applied (" + ", ".join(parts) + "; set them explicitly to override)"
