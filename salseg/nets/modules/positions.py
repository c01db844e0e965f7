"""Where a slice module sits in the network (``--module-position``; docs/modules.md "Module positions").

Every slice model takes K neighbouring slices ``(B, K, C, H, W)`` and returns the centre slice's logits, and has

- ``position``: ``head`` (the released placement, :class:`SliceRecurrentModel`), ``bottleneck``, ``skip`` or
  ``parallel`` (the models below);
- ``encode_slices(x (N, C, H, W)) -> cache``: the per-slice work that does not depend on the neighbours (a list of
  tensors with N rows), and ``decode_from_cache(cache, index (B, K)) -> logits``: the rest, for the windows whose
  slices are ``cache[index[b, j]]``. ``forward`` is exactly these two on the window's own slices, so a volume can be
  predicted with one ``encode_slices`` per slice (:func:`predict_volume_amortized`).

The non-head positions need a backbone with ``encode(x, inject=None) -> [level 0, ..., bottleneck]``,
``decode(feats) -> logits`` and ``encoder_channels`` (unet, mtunet, swinunet have them). The module is the head's
fusion core (``SliceHead`` without its classifier) wrapped in 1x1 projections ``proj_in`` (C_level -> module width)
and ``proj_out`` (fused width -> C_level), each left out when the widths already agree; its output is ADDED to the
centre slice's features at that level (a residual), so the decoder sees ``F_mid + proj_out(core(proj_in(F_1..K)))``.

Deep supervision: the backbone keeps its own deep-supervision heads; in training mode ``decode`` (hence ``forward``)
returns its list of outputs of the decoded centre slice, and ``deep_supervision_scales`` are the backbone's.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from salseg.errors import ConfigError, SalsegError
from salseg.nets.capabilities import (DEFAULT_POSITION, POSITIONS, Capabilities, capabilities_of,  # noqa: F401
                                      check_position_name)
from salseg.nets.modules.slice_model import SliceRecurrentModel, backbone_ds_scales, slice_capabilities, top_level
from salseg.nets.registry import ModuleEntry, set_default_attach

# Module width away from the head. 32 (not the head's 64) keeps MT-UNet's bottleneck SA-LSTM under +1 % parameters:
# a 64-wide ConvLSTM pair alone is 1.64 M (2.1 % of MT-UNet); at 32 the whole module is 0.51 M (0.64 %).
POSITION_FEATURES = 32


def position_of(model: nn.Module) -> str | None:
    """The module position of a built model (None for a model without a slice module)."""
    return capabilities_of(model).position


def check_position(saved: str | None, wanted: str | None, source) -> None:
    """Refuse to load weights trained with module position ``saved`` into a model built for ``wanted``."""
    saved, wanted = saved or DEFAULT_POSITION, wanted or DEFAULT_POSITION
    if saved != wanted:
        raise ConfigError(f"{source}: this checkpoint was trained with module position {saved!r} and cannot be "
                          f"loaded into a model with module position {wanted!r} (the weights differ in shape and "
                          f"meaning); use --module-position {saved}")


def _conv1x1(cin: int, cout: int) -> nn.Module:
    return nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)


class Fusion(nn.Module):
    """proj_in (per slice) -> core.fuse over the K slices -> proj_out."""

    def __init__(self, core: nn.Module, channels_in: int, channels_out: int):
        super().__init__()
        self.proj_in = _conv1x1(channels_in, core.features)
        self.core = core
        self.proj_out = _conv1x1(core.out_channels, channels_out)

    def fuse_projected(self, p: torch.Tensor) -> torch.Tensor:
        """(B, K, width, h, w) projected slices -> (B, channels_out, h, w)."""
        return self.proj_out(self.core.fuse(p))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        b, k = f.shape[:2]
        return self.fuse_projected(self.proj_in(f.flatten(0, 1)).unflatten(0, (b, k)))


def _check_window(model, x: torch.Tensor) -> None:
    if x.ndim != 5 or x.shape[1] != model.k:
        raise SalsegError(f"slice model ({model.position}) expects input (B, K={model.k}, C, H, W) "
                          f"(K neighbouring slices), got shape {tuple(x.shape)}")


def _window_index(b: int, k: int, device) -> torch.Tensor:
    return torch.arange(b * k, device=device).reshape(b, k)


def _gather(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(N, ...) rows picked by index (B, K) -> (B, K, ...)."""
    return t[index.reshape(-1)].unflatten(0, tuple(index.shape))


class _PositionModel(nn.Module):
    """A slice model whose module sits inside the backbone (the base of the non-head positions)."""

    def __init__(self, backbone: nn.Module, k: int, num_classes: int):
        super().__init__()
        if k < 1 or k % 2 == 0:
            raise SalsegError(f"slice models need an odd number of neighbouring slices, got K={k}")
        if not capabilities_of(backbone).encoder_decoder:
            raise SalsegError(f"module position {self.position!r} needs a backbone with an encoder/decoder "
                              f"interface (encode, decode, encoder_channels); {type(backbone).__name__} has "
                              f"none, so only the 'head' position works with it")
        self.backbone, self.k, self.num_classes = backbone, int(k), int(num_classes)
        # the backbone decodes the (fused) centre slice, so its own deep-supervision outputs are the model's
        self.deep_supervision_scales = backbone_ds_scales(backbone)

    @property
    def capabilities(self) -> Capabilities:
        return slice_capabilities(self, self.backbone)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_window(self, x)
        b, k = x.shape[:2]
        return self.decode_from_cache(self.encode_slices(x.flatten(0, 1)), _window_index(b, k, x.device))

    def extra_repr(self) -> str:
        return f"position={self.position!r}, level={self.level}, k={self.k}"


class EncoderFusionModel(_PositionModel):
    """``bottleneck`` / ``skip``: the encoder runs on every slice (shared weights); the module fuses the K slices'
    features at encoder level ``level`` and adds the result to the centre slice's; the decoder decodes the centre
    slice's features (its own skips everywhere else)."""

    def __init__(self, backbone: nn.Module, core: nn.Module, *, position: str, level: int | None = None,
                 k: int = 3, num_classes: int):
        self.position = position
        super().__init__(backbone, k, num_classes)
        channels = list(backbone.encoder_channels)
        n = len(channels)
        if position == "bottleneck":
            if level not in (None, n - 1, -1):
                raise ConfigError(f"module position 'bottleneck' is encoder level {n - 1}; --module-level "
                                  f"{level} belongs to the 'skip' position")
            level = n - 1
        else:
            level = n - 2 if level is None else int(level)
            if not 0 <= level <= n - 2:
                raise ConfigError(f"--module-level {level} is not a skip level of this backbone: its skips are "
                                  f"levels 0..{n - 2} (0 = shallowest, {n - 2} = deepest; {n - 1} is the "
                                  f"bottleneck position)")
        self.level = level
        self.fusion = Fusion(core, channels[level], channels[level])

    def encode_slices(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.backbone.encode(x))

    def decode_from_cache(self, cache: Sequence[torch.Tensor], index: torch.Tensor) -> torch.Tensor:
        mid = index.shape[1] // 2
        feats = [t[index[:, mid]] for t in cache]
        feats[self.level] = feats[self.level] + self.fusion(_gather(cache[self.level], index))
        return self.backbone.decode(feats)


class ParallelModel(_PositionModel):
    """``parallel``: the module runs on the K input slices beside the encoder (1x1 projection to the module width,
    average-pooled to the first encoder level's resolution); its output, projected to that level's width, is added
    to the centre slice's first-level features, and the encoder and decoder run on the centre slice only."""

    position = "parallel"

    def __init__(self, backbone: nn.Module, core: nn.Module, *, in_channels: int, k: int = 3, num_classes: int):
        super().__init__(backbone, k, num_classes)
        self.level = 0
        self.fusion = Fusion(core, int(in_channels), list(backbone.encoder_channels)[0])

    def encode_slices(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x, self.fusion.proj_in(x)]

    def decode_from_cache(self, cache: Sequence[torch.Tensor], index: torch.Tensor) -> torch.Tensor:
        x, p = cache
        mid = index.shape[1] // 2
        window = _gather(p, index)  # (B, K, width, H, W)

        def inject(f0: torch.Tensor) -> torch.Tensor:
            q = window
            if tuple(q.shape[-2:]) != tuple(f0.shape[-2:]):
                q = F.adaptive_avg_pool2d(q.flatten(0, 1), tuple(f0.shape[-2:])).unflatten(0, tuple(index.shape))
            return f0 + self.fusion.fuse_projected(q)

        return self.backbone.decode(self.backbone.encode(x[index[:, mid]], inject=inject))


@runtime_checkable
class FusionCore(Protocol):
    """What a slice head built with ``classifier=False`` must offer to sit away from the head position."""

    features: int
    out_channels: int

    def fuse(self, feats: torch.Tensor) -> torch.Tensor: ...


def attach_slice(entry: ModuleEntry, backbone: Callable[..., nn.Module], *, in_channels: int, num_classes: int,
                 position: str = DEFAULT_POSITION, level: int | None = None, **options) -> nn.Module:
    """A slice module on a 2D backbone at ``position`` (the ``slice`` kind's way to attach, salseg.nets.registry).

    ``head``: the backbone's segmentation head becomes a 1x1 conv to ``features`` channels (no activation); its
    deeper deep-supervision heads (if any) predict the classes. Other positions: the full backbone (own classifier
    and deep-supervision heads) with the head's fusion core (``build(..., classifier=False)``) inside it.
    """
    if position == "head":
        features = int(options.pop("features", 64))
        net = backbone(in_channels, features, 2)  # built before the head: the order of their random init
        head = entry.build(features=features, num_classes=num_classes, **options)
        return SliceRecurrentModel(net, head, num_classes=num_classes, features=features)
    features = int(options.pop("features", POSITION_FEATURES))
    net = backbone(in_channels, num_classes, 2)
    try:
        core = entry.build(features=features, num_classes=num_classes, classifier=False, **options)
    except TypeError:  # a plug-in head without a separable fusion core
        core = None
    if not isinstance(core, FusionCore):
        raise SalsegError(f"module {entry.name!r} has no separable fusion core (build(..., classifier=False) with "
                          f"fuse, features, out_channels), so it works only at position 'head'")
    if position == "parallel":
        return ParallelModel(net, core, in_channels=in_channels, num_classes=num_classes)
    return EncoderFusionModel(net, core, position=position, level=level, num_classes=num_classes)


set_default_attach("slice", attach_slice)


def neighbour_index(z: int, k: int = 3, device=None) -> torch.Tensor:
    """(Z, K) slice indices of each slice's window, clamped at the volume's ends (nearest existing slice)."""
    offsets = torch.arange(k, device=device) - k // 2
    return (torch.arange(z, device=device)[:, None] + offsets[None]).clamp_(0, z - 1)


@torch.no_grad()
def predict_volume_amortized(model: nn.Module, volume: torch.Tensor, batch_size: int = 8, chunk: int | None = None,
                             progress: Callable[[str, int, int], None] | None = None) -> torch.Tensor:
    """Logits (classes, Z, H, W) of every slice of ``volume`` (C, Z, H, W) with one ``encode_slices`` per slice.

    Equals calling the model on each slice's clamped window of K slices (``neighbour_index``), but the per-slice
    work (head: the whole backbone; bottleneck/skip: the encoder; parallel: the input projection) is done once per
    slice instead of K times. ``batch_size`` slices go through the model at a time. ``chunk`` (default: the whole
    volume) bounds memory: the cache then holds ``chunk`` slices plus K//2 on each side, and those edge slices are
    encoded again with the next chunk. The model's train/eval mode is left as it is (call ``model.eval()`` first).
    """
    caps = capabilities_of(model)
    if not (caps.is_slice_model and caps.slice_cache):
        raise SalsegError("predict_volume_amortized needs a slice model (a network with a slice module)")
    if volume.ndim != 4:
        raise SalsegError(f"expected a volume (C, Z, H, W), got shape {tuple(volume.shape)}")
    if batch_size < 1 or (chunk is not None and chunk < 1):
        raise ConfigError(f"batch_size and chunk must be >= 1, got {batch_size} and {chunk}")
    z, half = volume.shape[1], caps.slice_k // 2
    slices = volume.transpose(0, 1)  # (Z, C, H, W)
    index = neighbour_index(z, caps.slice_k, device=volume.device)
    chunk = z if chunk is None else int(chunk)
    out = []
    for z0 in range(0, z, chunk):
        z1 = min(z0 + chunk, z)
        lo, hi = max(z0 - half, 0), min(z1 + half, z)
        parts = [model.encode_slices(slices[s:min(s + batch_size, hi)]) for s in range(lo, hi, batch_size)]
        cache = [torch.cat(level, 0) for level in zip(*parts)]
        for s in range(z0, z1, batch_size):
            out.append(top_level(model.decode_from_cache(cache, index[s:min(s + batch_size, z1)] - lo)))
        if progress:
            progress("predicting slices", z1, z)
    return torch.cat(out, 0).transpose(0, 1)
