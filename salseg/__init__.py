"""salseg: medical image segmentation with context modules, planned and tested nnU-Net style."""

__version__ = "0.1.0"
