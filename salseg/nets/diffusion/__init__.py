"""Diffusion segmenters (MedSegDiff, LDSeg): importing this package registers both networks."""

from salseg.nets.diffusion import ldseg, medsegdiff  # noqa: F401  (registration side effects)
from salseg.nets.diffusion.samplers import DiffusionSegmenter

__all__ = ["DiffusionSegmenter"]
