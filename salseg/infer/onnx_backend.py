"""``predict --backend onnxruntime``: a package's ONNX graphs (salseg.run.onnx) in place of the torch network, with
the same sliding window, mirroring, fold ensemble and export (the predictor calls them like the network)."""

from __future__ import annotations

from dataclasses import replace
import numpy as np
import torch

from salseg.errors import ConfigError
from salseg.nets.capabilities import capabilities_of

BACKENDS = ("torch", "onnxruntime")


class OnnxNetwork:
    """One fold's ONNX Runtime session, called like the network: tiles (B, C, *patch) -> logits (B, K, *patch)
    (a slice model's tiles (B, K, C, h, w)). It declares the torch model's capabilities without the per-slice
    cache (a graph has one entry point), so slice models take the stacked-neighbour path."""

    def __init__(self, session, capabilities):
        self.session = session
        self.capabilities = replace(capabilities, slice_cache=False)

    def eval(self):
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {"image": arr})[0])


def check_backend(backend: str, device: torch.device) -> None:
    """A known backend on a device it runs on (``device`` resolved: predictor.resolve_device)."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose {' or '.join(BACKENDS)}")
    if backend != "torch" and device.type != "cpu":
        raise ConfigError("--backend onnxruntime runs on the CPU; use --device cpu (or the torch backend)")


def onnx_networks(pkg, path, fold_names: list[str], model) -> list[OnnxNetwork]:
    """The ONNX networks of ``fold_names`` in ``pkg``, the verified package read from ``path`` (None: ``path`` is no
    package, refused)."""
    from salseg.run.onnx import onnx_session
    from salseg.run.package import ONNX_FILE

    if pkg is None or not pkg.manifest.get("onnx"):
        raise ConfigError(f"{path}: no ONNX graphs in this model; export it with `salseg export-model ... --onnx` "
                          f"(--backend onnxruntime needs such a package)")
    caps = capabilities_of(model)
    return [OnnxNetwork(onnx_session(pkg.files[f"fold_{f}/{ONNX_FILE}"]), caps) for f in fold_names]


