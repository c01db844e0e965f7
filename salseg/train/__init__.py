"""Training: patch sampling and augmentation, losses, the trainer, DDP set-up, CPU-sized defaults. The run config
and checkpoint format a training writes are the trained-model contract of ``salseg.run``."""

from salseg.train.trainer import train

__all__ = ["train"]
