"""Training: patch sampling and augmentation, losses, the trainer, checkpoints, DDP set-up, CPU-sized defaults."""

from salseg.train.config import RunConfig, build_model
from salseg.train.settings import TrainSettings
from salseg.train.trainer import Trainer, train

__all__ = ["RunConfig", "TrainSettings", "Trainer", "build_model", "train"]
