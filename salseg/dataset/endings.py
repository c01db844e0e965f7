"""Image file endings salseg reads and writes (the lowest module of salseg.dataset: io and integrity both use it)."""

from __future__ import annotations

from pathlib import Path

VOLUME_ENDINGS = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")
NATURAL_ENDINGS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
ALL_ENDINGS = VOLUME_ENDINGS + NATURAL_ENDINGS


def file_ending(path: str | Path) -> str:
    """The image ending of a file name (``.nii.gz`` counts as one ending)."""
    name = str(path).lower()
    for end in sorted(ALL_ENDINGS, key=len, reverse=True):
        if name.endswith(end):
            return end
    return Path(name).suffix


__all__ = ["ALL_ENDINGS", "NATURAL_ENDINGS", "VOLUME_ENDINGS", "file_ending"]
