"""Inference: sliding window (Gaussian weights, mirroring), predictor (fold ensembles, 2D/2.5d/3D, diffusion),
export back to the original image geometry."""

from salseg.infer.sliding_window import gaussian_importance_map, sliding_window_predict

__all__ = ["gaussian_importance_map", "sliding_window_predict"]
