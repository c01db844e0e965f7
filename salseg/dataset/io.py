"""Image IO through SimpleITK, geometry kept exactly.

Conventions used everywhere in salseg:
- an image is a float32 array (C, Z, Y, X); a 2D image has Z == 1;
- a label map is an integer array (Z, Y, X);
- ``props`` is a JSON-safe dict: ``spacing`` (z, y, x), ``origin`` and ``direction`` as SimpleITK gives them
  (x, y, z order, direction row-major), ``itk_size``, ``ndim`` (2 or 3), ``shape`` (Z, Y, X). For 2D images
  the z spacing is 999.0 (as nnU-Net) so that planners treat the slice axis as "no neighbour".
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from salseg.dataset.endings import ALL_ENDINGS, NATURAL_ENDINGS, VOLUME_ENDINGS, file_ending  # noqa: F401 (re-exported)
from salseg.dataset.integrity import verify_image_file
from salseg.errors import DataError
from salseg.fileio import atomic_path

SPACING_2D_Z = 999.0


def read_sitk(path: str | Path, verify: bool = True) -> sitk.Image:
    """Read a file with SimpleITK; a missing, truncated or unreadable file raises DataError naming it.
    ``verify=False`` only where the caller has just run :func:`verify_image_file` on it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if verify:
        verify_image_file(path)  # SimpleITK zero-fills what a truncated file lacks
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else "unknown reason"
        raise DataError(f"{path}: unreadable image ({first})") from None


def geometry_of(img: sitk.Image) -> dict:
    """JSON-safe geometry of a SimpleITK image in salseg's ``props`` form (see module doc)."""
    dim = img.GetDimension()
    size = list(img.GetSize())
    spacing = [float(s) for s in img.GetSpacing()][::-1]
    if dim == 2:
        shape = [1, size[1], size[0]]
        spacing = [SPACING_2D_Z] + spacing
    elif dim == 3:
        shape = size[::-1]
    else:
        raise ValueError(f"unsupported image dimension {dim}")
    return {
        "spacing": spacing,
        "origin": [float(o) for o in img.GetOrigin()],
        "direction": [float(d) for d in img.GetDirection()],
        "itk_size": size,
        "ndim": dim,
        "shape": [int(s) for s in shape],
    }


def _to_czyx(img: sitk.Image, path: Path) -> np.ndarray:
    arr = sitk.GetArrayFromImage(img)
    ncomp = img.GetNumberOfComponentsPerPixel()
    dim = img.GetDimension()
    if ncomp > 1:  # vector pixels: (..., C) -> (C, ...)
        arr = np.moveaxis(arr, -1, 0)
        if ncomp == 4 and file_ending(path) in NATURAL_ENDINGS:  # RGBA -> RGB
            arr = arr[:3]
    else:
        arr = arr[None]
    if dim == 2:
        arr = arr[:, None]
    if dim not in (2, 3):
        raise DataError(f"{path}: {dim}D images are not supported (2D or 3D only)")
    return arr


def read_image(path: str | Path, verify: bool = True) -> tuple[np.ndarray, dict]:
    """One image file -> (array (C, Z, Y, X) float32, props). RGB files give C = 3."""
    path = Path(path)
    img = read_sitk(path, verify)
    return _to_czyx(img, path).astype(np.float32, copy=False), geometry_of(img)


def read_images(paths: Sequence[str | Path]) -> tuple[np.ndarray, dict]:
    """The channel files of one case -> (array (C, Z, Y, X) float32, props of the first channel).

    All channels must share shape; RGB files contribute three channels each.
    """
    arrays, props = [], None
    for p in paths:
        arr, pr = read_image(p)
        if props is None:
            props = pr
        elif arr.shape[1:] != tuple(props["shape"]):
            raise DataError(f"{p}: shape {list(arr.shape[1:])} differs from the case's first channel "
                            f"{props['shape']} ({paths[0]})")
        arrays.append(arr)
    if props is None:
        raise DataError("no image files given")
    return np.concatenate(arrays, axis=0), props


def read_label(path: str | Path, verify: bool = True) -> tuple[np.ndarray, dict]:
    """A label file -> (array (Z, Y, X) integer, props). Multi-component labels keep the first component."""
    path = Path(path)
    img = read_sitk(path, verify)
    arr = _to_czyx(img, path)[0]
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise DataError(f"{path}: label map has non-integer values")
    return arr.astype(np.int16 if arr.max(initial=0) < 32767 else np.int32, copy=False), geometry_of(img)


def _to_sitk(arr: np.ndarray, props: dict) -> sitk.Image:
    """(Z, Y, X) array + props -> SimpleITK image with the original geometry."""
    if props.get("ndim", 3) == 2:
        img = sitk.GetImageFromArray(arr[0] if arr.ndim == 3 else arr)
        img.SetSpacing([float(s) for s in props["spacing"][1:]][::-1])
    else:
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing([float(s) for s in props["spacing"]][::-1])
    img.SetOrigin(props["origin"])
    img.SetDirection(props["direction"])
    return img


def write_image(arr: np.ndarray, props: dict, path: str | Path) -> None:
    """Write a (Z, Y, X) array (label map or scalar image) with the geometry in ``props`` (atomically).

    PNG/BMP/JPG outputs are written as uint8 (labels must be < 256); volumes keep the array's dtype.
    """
    path = Path(path)
    end = file_ending(path)
    if end in NATURAL_ENDINGS and arr.dtype != np.uint8:
        if arr.min(initial=0) < 0 or arr.max(initial=0) > 255:
            raise DataError(f"{path}: values outside 0..255 cannot be written as {end}")
        arr = arr.astype(np.uint8)
    img = _to_sitk(np.ascontiguousarray(arr), props)
    with atomic_path(path, end) as tmp:
        try:
            sitk.WriteImage(img, str(tmp), useCompression=end in (".nii.gz", ".mha", ".nrrd"))
        except RuntimeError as e:
            text = str(e).strip()
            raise DataError(f"{path}: could not write the image ({text.splitlines()[-1] if text else 'no reason'})"
                            ) from None
        try:  # SimpleITK may report a short write (e.g. a full disk) only on stderr
            verify_image_file(tmp)
        except DataError as e:
            raise DataError(f"{path}: the written file is incomplete ({str(e).split('(', 1)[-1]}") from None


def write_multichannel(arr: np.ndarray, props: dict, paths: Sequence[str | Path]) -> None:
    """Write a (C, Z, Y, X) image as one file per channel (nnU-Net's ``_0000``, ``_0001`` ...)."""
    for c, p in enumerate(paths):
        write_image(arr[c], props, p)


def same_geometry(a: dict, b: dict, tol: float = 1e-4) -> str | None:
    """None if a and b have the same grid; else a short description of the first difference.

    Spacing is compared relative (``tol`` of the value), origin absolute in mm with a 1e-3 mm floor
    scaled by spacing, direction absolute.
    """
    if list(a["shape"]) != list(b["shape"]):
        return f"shape {a['shape']} vs {b['shape']}"
    sa, sb = np.asarray(a["spacing"], float), np.asarray(b["spacing"], float)
    if not np.allclose(sa, sb, rtol=tol, atol=1e-6):
        return f"spacing {a['spacing']} vs {b['spacing']}"
    oa, ob = np.asarray(a["origin"], float), np.asarray(b["origin"], float)
    if oa.shape != ob.shape or not np.allclose(oa, ob, rtol=0, atol=max(1e-3, tol * float(sa.min()))):
        return f"origin {a['origin']} vs {b['origin']}"
    da, db = np.asarray(a["direction"], float), np.asarray(b["direction"], float)
    if da.shape != db.shape or not np.allclose(da, db, rtol=0, atol=tol * 10):
        return f"direction {a['direction']} vs {b['direction']}"
    return None
