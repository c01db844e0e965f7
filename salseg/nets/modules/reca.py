"""``reca``: recurrent attention (spec/modules.md §2). It adds no layer: the network's own window self-attention
carries a running sum of queries, so this module only names and validates the options the network applies.

In block i of a group: ``Qhat_i = Q_i + Qhat_{i-1}`` (``Qhat_0 = 0``, gradients flow into earlier W_q),
``A_i = softmax((Qhat_i d^-1/2) K_i^T + bias (+ mask))``, ``out_i = A_i V_i W_o``; the unscaled ``Qhat_i`` goes on.

Options:
- ``strategy="ists"`` (default; "RecA-H"): the state restarts at every encoder stage of a hierarchical network;
  ``"sts"`` ("RecA-S"): one state through all encoder blocks (across a patch merging it is carried by a
  parameter-free 2x merge, see ``salseg.nets.swin``).
- ``align=False`` (default, the release): in Swin blocks the state stays in window-partition order and the shifted
  block adds it index by index; ``True`` moves it to the shifted partition first (same image position).
Networks that accept it: every registered network with ``has_self_attention`` (``swinunet``, ``swinunetr``,
``mtunet``); the implementation is ``salseg.nets.swin.RecAState``.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from salseg.nets.registry import ModuleEntry, register_module, set_default_attach
from salseg.nets.swin import check_attention_options

DEFAULTS = {"strategy": "ists", "align": False}


def attach_attention(entry: ModuleEntry, backbone: Callable[..., nn.Module], *, in_channels: int, num_classes: int,
                     position: str = "head", level: int | None = None, **options) -> nn.Module:
    """The ``attention`` kind: the network's own self-attention applies the module (its factory gets
    ``attention=<module name>`` and the module's options, and checks them)."""
    del position, level
    return backbone(in_channels, num_classes, attention=entry.name, **options)


set_default_attach("attention", attach_attention)


@register_module("reca", kind="attention", options=("strategy", "align"), attach=attach_attention)
def reca(strategy: str = "ists", align: bool = False) -> dict:
    """RecA: recurrent attention (running query sum) in the network's self-attention; adds no parameters."""
    check_attention_options("reca", strategy, align)
    return {"strategy": strategy, "align": align}
