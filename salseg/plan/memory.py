"""Batch size for a slice module's real cost (2.5d): the plans size the batch for ONE pass of the network per
sample; a slice module runs more of it per sample, so the same GPU holds fewer samples.

Per sample, in feature-map elements of the plans' network (salseg.plan.topology, the planner's own count):

- ``head``: the whole backbone runs on each of the K slices -> K x (encoder + decoder);
- ``bottleneck`` / ``skip``: the encoder runs on the K slices, the decoder on the centre one -> K x encoder + decoder;
- ``parallel``: encoder and decoder on the centre slice; the module's K-slice input projection is small -> 1 x;
- ``stack`` (K slices as K*C input channels of the unchanged backbone): 1 x (only the first conv's input grows).

The module's own activations (e.g. a ConvLSTM at full resolution) are not counted, so the sized batch is a lower
bound on the saving, not a guarantee. The batch becomes ``floor(planned batch / cost factor)``, at least 2 (or the
planned batch if smaller).
The planner sizes the ``2.5d`` configuration for ``head`` (the costliest position), so that every arm of a 2.5d
comparison shares one batch (one protocol); ``train`` sizes a slice module on the ``2d`` plans for its own position.
"""

from __future__ import annotations

import math

from salseg.plan.topology import encoder_decoder_elements

STACKED_INPUT_MODULES = ("stack",)
MIN_BATCH = 2   # modules that feed the K slices as channels through ONE backbone pass


def module_cost_factor(conf: dict, num_classes: int, position: str, k: int, module: str = "") -> tuple[float, str]:
    """(activation cost per sample relative to the plans' one pass, how it was counted)."""
    if module in STACKED_INPUT_MODULES or k <= 1:
        return 1.0, f"{module or 'the model'} runs the backbone once per sample"
    enc, dec = encoder_decoder_elements(conf, num_classes)
    if position == "head":
        return float(k), f"head: the backbone runs on all K={k} slices"
    if position in ("bottleneck", "skip"):
        return (k * enc + dec) / (enc + dec), (f"{position}: the encoder runs on K={k} slices "
                                               f"({k} x {enc:,} + {dec:,} feature-map elements per sample vs "
                                               f"{enc + dec:,})")
    return 1.0, f"{position}: encoder and decoder run on the centre slice only"


def slice_module_batch(conf: dict, num_classes: int, position: str, k: int, module: str = "",
                       min_batch: int = MIN_BATCH) -> tuple[int, str]:
    """(batch size, reason) for a slice module at ``position`` over ``k`` slices on plans configuration ``conf``
    (whose ``batch_size`` was planned for one pass per sample); never below ``min_batch`` (the planner's minimum,
    which keeps foreground oversampling), saying so when the memory target then cannot be met."""
    planned = int(conf["batch_size"])
    factor, why = module_cost_factor(conf, num_classes, position, k, module)
    if factor <= 1.0:
        return planned, f"planned batch {planned} kept: {why}"
    exact = math.floor(planned / factor + 1e-9)
    batch = max(min(min_batch, planned), exact)
    note = "" if batch == exact else f" (raised to the minimum {batch}: may exceed the memory target; " \
                                     f"lower --patch-size)"
    return batch, f"planned batch {planned} / {factor:.2f} -> {batch}{note}: {why}"
