"""What a built model can do, declared by the model itself: ``model.capabilities`` is a :class:`Capabilities`.

Every network and every wrapper (slice models, ``stack``, the module positions, the diffusion segmenters) fills it,
and the trainer, the predictor and the benchmarks read it through :func:`capabilities_of` instead of probing the
model for attributes. A wrapper derives its own from its backbone's (``stack`` keeps the backbone's divisor and
deep-supervision outputs, a slice model adds its K and position).

A model that declares nothing (a plug-in network from the ``salseg.networks`` entry point, a bare ``nn.Module``) is a
plain segmenter: one full-resolution output, no slice window, no constraint on its input size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from salseg.errors import ConfigError

# where a slice module sits in the network (salseg.nets.modules.positions; docs/modules.md "Module positions")
POSITIONS = ("head", "bottleneck", "skip", "parallel")
DEFAULT_POSITION = "head"


def check_position_name(position: str) -> str:
    if position not in POSITIONS:
        raise ConfigError(f"unknown module position {position!r}; choose one of {', '.join(POSITIONS)}")
    return position


@dataclass(frozen=True)
class Capabilities:
    """The declared abilities of one built model (all defaults: a plain 2D/3D segmenter with one output).

    - ``slice_k``: a slice model takes K neighbouring slices ``(B, K, C, H, W)`` and returns the centre slice's
      logits (None: it takes ``(B, C, *spatial)``);
    - ``position``: where its slice module sits (one of ``POSITIONS``; None without a slice module);
    - ``slice_cache``: it has ``encode_slices(x) -> cache`` and ``decode_from_cache(cache, index)``, so a volume is
      predicted with one per-slice pass per slice (salseg.nets.modules.positions.predict_volume_amortized);
    - ``diffusion``: ``training_loss(image, target)`` and ``sample(image, ...)`` (probabilities) instead of logits;
      ``validation_steps``: the cheap number of sampling steps for in-training validation; ``ema``: call
      ``ema_update()`` after every optimiser step;
    - ``divisor``: every input size must be a multiple of these, per axis (None: no constraint stated);
    - ``deep_supervision_scales``: per output of training mode, its per-axis scale (full resolution first); more
      than one means deep supervision applies;
    - ``encoder_decoder``: ``encode(x, inject=None) -> [level 0, ..., bottleneck]``, ``decode(feats)`` and
      ``encoder_channels`` (what the non-head module positions need of a backbone);
    - ``retarget_deep_supervision``: ``retarget_deep_supervision(num_classes)`` makes its deeper outputs predict
      the classes (what a slice model's head position needs of a backbone with deep supervision).
    """

    slice_k: int | None = None
    position: str | None = None
    slice_cache: bool = False
    diffusion: bool = False
    validation_steps: int | None = None
    ema: bool = False
    divisor: tuple[int, ...] | None = None
    deep_supervision_scales: tuple[tuple[float, ...], ...] = ()
    encoder_decoder: bool = False
    retarget_deep_supervision: bool = False

    @property
    def is_slice_model(self) -> bool:
        return self.slice_k is not None

    @property
    def deep_supervision(self) -> bool:
        """Whether training mode returns more than one output."""
        return len(self.deep_supervision_scales) > 1

    def input_shape(self, in_channels: int, size, batch: int = 1) -> tuple[int, ...]:
        """The shape of a ``batch`` of inputs of spatial ``size``: ``(B, K, C, *size)`` for a slice model, else
        ``(B, C, *size)``."""
        lead = (int(batch), self.slice_k) if self.is_slice_model else (int(batch),)
        return (*lead, int(in_channels), *(int(s) for s in size))

    def scales(self, dim: int = 2) -> list[list[float]]:
        """``deep_supervision_scales`` as lists (one full-resolution output when none are declared)."""
        return [list(s) for s in self.deep_supervision_scales] or [[1.0] * dim]


@runtime_checkable
class Declares(Protocol):
    """A model that states its capabilities (every salseg network and wrapper)."""

    @property
    def capabilities(self) -> Capabilities: ...


PLAIN = Capabilities()


def capabilities_of(model) -> Capabilities:
    """The capabilities ``model`` declares; a model that declares none is a plain segmenter (``PLAIN``)."""
    return model.capabilities if isinstance(model, Declares) else PLAIN


def as_scales(scales) -> tuple[tuple[float, ...], ...]:
    """Deep-supervision scales (lists of per-axis floats) as the tuple ``Capabilities`` holds."""
    return tuple(tuple(float(v) for v in s) for s in scales)


def as_divisor(divisor, dim: int) -> tuple[int, ...] | None:
    """A divisor (one int for every axis, or one per axis) as a per-axis tuple; None stays None."""
    if divisor is None:
        return None
    return tuple(int(d) for d in divisor) if isinstance(divisor, (list, tuple)) else (int(divisor),) * int(dim)
