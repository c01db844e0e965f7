"""One fold's network as an ONNX graph (``salseg export-model --onnx``), checked against torch at export time.

The graph takes ``image`` with a dynamic batch and the planned patch fixed: ``(batch, C, *patch)``, for a slice
model ``(batch, K, C, h, w)`` (its K neighbouring slices, capabilities' ``slice_k``), and returns the
full-resolution ``logits`` (``batch, classes, *patch``). A model that cannot be exported is refused here, naming
why: a diffusion network (sampling is a loop of network calls, not one graph), an operator the exporter lacks, or
a graph whose ONNX Runtime output differs from torch's by more than :data:`TOLERANCE` (times the logits' magnitude
when it exceeds 1: float32 rounding grows with it).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from torch import nn

from salseg.errors import ConfigError
from salseg.nets.capabilities import capabilities_of

OPSET = 17
TOLERANCE = 1e-4


class _Logits(nn.Module):
    """The network's full-resolution output only (a deep-supervision list's first entry)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        return out[0] if isinstance(out, (list, tuple)) else out


def onnx_refusal(model: nn.Module) -> str | None:
    """Why ``model`` has no ONNX graph (None: it may be exported)."""
    if capabilities_of(model).diffusion:
        return ("a diffusion network samples with a loop of network calls per tile (steps x ensemble), not one "
                "graph; predict it with the torch backend")
    return None


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def export_onnx(model: nn.Module, cfg, plans, opset: int | None = None) -> tuple[bytes, dict]:
    """(the ONNX graph of ``model`` as bytes, its description for the manifest); ConfigError naming the model and
    the reason when it cannot be exported or ONNX Runtime does not reproduce torch's logits."""
    name = f"{cfg.network}__{cfg.module}__{cfg.config}"
    why = onnx_refusal(model)
    if why:
        raise ConfigError(f"{name}: cannot be exported to ONNX: {why}")
    opset = int(opset or OPSET)
    caps = capabilities_of(model)
    patch = [int(p) for p in plans.configuration(cfg.config).patch_size]
    shape = caps.input_shape(cfg.in_channels, patch, batch=2)
    wrapped = _Logits(model).eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen)
    buf = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes on shape checks: the patch is fixed in the graph
            torch.onnx.export(wrapped, (x,), buf, input_names=["image"], output_names=["logits"],
                              dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset,
                              do_constant_folding=True, dynamo=False)
    except Exception as e:  # an operator without an ONNX symbolic, data-dependent control flow, ...
        raise ConfigError(f"{name}: cannot be exported to ONNX (opset {opset}): {_first_line(e)}") from None
    data = buf.getvalue()
    worst, scale = check_parity(wrapped, data, [x, torch.randn((1, *shape[1:]), generator=gen)])
    if worst > TOLERANCE * scale:
        raise ConfigError(f"{name}: ONNX Runtime's logits differ from torch's by {worst:.2g} (> {TOLERANCE} x "
                          f"{scale:.3g}, the logits' magnitude); not exported")
    info = {"opset": opset, "input": "image", "output": "logits", "input_shape": ["batch", *shape[1:]],
            "patch_size": patch, "slice_k": caps.slice_k, "max_abs_diff": float(worst), "logit_scale": scale,
            "onnx_version": _version("onnx"), "exporter": f"torch {torch.__version__}"}
    return data, info


def check_parity(wrapped: nn.Module, data: bytes, inputs: list[torch.Tensor]) -> tuple[float, float]:
    """(the largest |ONNX Runtime - torch| over the logits of ``inputs``, max(1, the largest |torch logit|)): float32
    rounding grows with the logits' magnitude, so the tolerance is relative to it beyond 1."""
    session = onnx_session(data)
    worst, scale = 0.0, 1.0
    with torch.no_grad():
        for x in inputs:
            ref = wrapped(x).numpy()
            got = session.run(None, {"image": x.numpy()})[0]
            if got.shape != ref.shape:
                raise ConfigError(f"ONNX graph gives shape {got.shape} for batch {x.shape[0]}, torch {ref.shape}")
            worst = max(worst, float(np.abs(got - ref).max()))
            scale = max(scale, float(np.abs(ref).max()))
    return worst, scale


def onnx_session(data: bytes, threads: int | None = None):
    """An ONNX Runtime CPU session of a graph (``threads``: intra-op threads, default torch's)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("ONNX needs onnxruntime: pip install 'salseg[onnx]'") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except ImportError:
        return ""
