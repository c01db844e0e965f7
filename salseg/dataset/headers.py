"""What is checked before an image reader sees a file: its name is valid UTF-8 (SimpleITK aborts the process on
one that is not) and the size its header declares fits in memory (read with SimpleITK's
``ImageFileReader.ReadImageInformation``, which allocates nothing).

The size limit, in voxels (channels counted), is ``$SALSEG_MAX_IMAGE_VOXELS`` when set, else the available memory
divided by :data:`BYTES_PER_VOXEL` (the float32 array salseg reads plus one working copy).
"""

from __future__ import annotations

import os
from pathlib import Path

import SimpleITK as sitk

from salseg.errors import ConfigError, DataError

LIMIT_ENV = "SALSEG_MAX_IMAGE_VOXELS"
BYTES_PER_VOXEL = 8  # the float32 array as read plus one working copy of it


def shown(path: str | os.PathLike) -> str:
    """A path as text that can always be printed: bytes that are not UTF-8 are shown escaped (``\\xff``)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def utf8_name(path: str | os.PathLike) -> bool:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def name_problem(path: str | os.PathLike) -> str | None:
    """The one-line problem of a path whose name is not valid UTF-8 (None if it is)."""
    if utf8_name(path):
        return None
    return f"{shown(path)}: file name is not valid UTF-8 (the escaped bytes); rename the file"


def require_utf8_name(path: str | os.PathLike) -> None:
    problem = name_problem(path)
    if problem:
        raise DataError(problem)


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``; else free physical pages)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def voxel_limit() -> tuple[int | None, str]:
    """(largest image in voxels, where the number comes from); None = no limit known."""
    text = os.environ.get(LIMIT_ENV, "").strip()
    if text:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not value >= 1 or value != int(value):
            raise ConfigError(f"${LIMIT_ENV}={text!r}: expected a positive whole number of voxels")
        return int(value), f"${LIMIT_ENV}"
    mem = available_memory()
    if mem is None:
        return None, "unknown"
    return mem // BYTES_PER_VOXEL, (f"{mem / 2**30:.1f} GiB of available memory at {BYTES_PER_VOXEL} bytes per "
                                    f"voxel; set ${LIMIT_ENV} to change it")


def read_header(path: Path) -> sitk.ImageFileReader:
    """A SimpleITK reader of ``path`` with the header read (nothing allocated); the declared size is checked
    against :func:`voxel_limit`. Raises RuntimeError (SimpleITK's) when the header cannot be read."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    size = list(reader.GetSize())
    voxels = reader.GetNumberOfComponents()
    for s in size:
        voxels *= int(s)
    limit, why = voxel_limit()
    if limit is not None and voxels > limit:
        raise DataError(f"{path}: the header declares an image of {' x '.join(str(s) for s in size)} voxels "
                        f"x {reader.GetNumberOfComponents()} component(s) ({voxels:.3g} values), above the limit of "
                        f"{limit:.3g} ({why})")
    return reader


__all__ = ["LIMIT_ENV", "name_problem", "read_header", "require_utf8_name", "shown", "voxel_limit"]
