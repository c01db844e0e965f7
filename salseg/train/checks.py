"""Run checks of the trainer that are not about a single loss value: the weights after an epoch's last step."""

from __future__ import annotations

import torch
from torch import nn

from salseg.errors import RunFailed


def non_finite_tensors(model: nn.Module) -> list[str]:
    """Names of the parameters and floating-point buffers that hold NaN or infinity."""
    named = list(model.named_parameters()) + [(n, b) for n, b in model.named_buffers() if b.is_floating_point()]
    with torch.no_grad():
        return [name for name, t in named if not bool(torch.isfinite(t).all())]


def check_finite_weights(model: nn.Module, epoch: int) -> None:
    """A model with non-finite weights after epoch ``epoch`` (1-based) is a failed run (exit 1): the loss of the
    last step was finite, its update was not."""
    bad = non_finite_tensors(model)
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise RunFailed(f"training diverged: the weights hold NaN or infinity after epoch {epoch} "
                        f"({', '.join(bad[:3])}{more}); no final checkpoint written; try a lower --lr")
