"""Training: patch sampling and augmentation, losses, the trainer (salseg.train.trainer: set-up, epoch, validation,
finish), DDP set-up, CPU-sized defaults. What the user asks for is one TrainSettings (salseg.train.settings); the run
config and checkpoint format a training writes are the trained-model contract of ``salseg.run``."""

from salseg.train.settings import TrainSettings
from salseg.train.trainer import Trainer, train

__all__ = ["TrainSettings", "Trainer", "train"]
