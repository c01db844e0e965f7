"""Training: patch sampling and augmentation, losses, the trainer, checkpoints, DDP set-up, CPU-sized defaults."""

from salseg.train.config import RunConfig, build_model
from salseg.train.trainer import train

__all__ = ["RunConfig", "build_model", "train"]
