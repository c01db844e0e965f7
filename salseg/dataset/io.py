"""Image IO through SimpleITK, geometry kept exactly.

Conventions used everywhere in salseg:
- an image is a float32 array (C, Z, Y, X); a 2D image has Z == 1;
- a label map is an integer array (Z, Y, X);
- ``props`` is a JSON-safe dict: ``spacing`` (z, y, x), ``origin`` and ``direction`` as SimpleITK gives them
  (x, y, z order, direction row-major), ``itk_size``, ``ndim`` (2 or 3), ``shape`` (Z, Y, X). For 2D images
  the z spacing is 999.0 (as nnU-Net) so that planners treat the slice axis as "no neighbour".
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk
from PIL import Image

from salseg.dataset.endings import ALL_ENDINGS, NATURAL_ENDINGS, VOLUME_ENDINGS, file_ending  # noqa: F401 (re-exported)
from salseg.dataset.headers import read_header, require_utf8_name
from salseg.dataset.integrity import verify_image_file
from salseg.errors import DataError
from salseg.fileio import atomic_path

SPACING_2D_Z = 999.0
_FLOAT_PIXELS = {sitk.sitkFloat32, sitk.sitkFloat64, sitk.sitkVectorFloat32, sitk.sitkVectorFloat64}
log = logging.getLogger("salseg.itk")


class _OneLineLogger(sitk.LoggerBase):
    """ITK's messages (``WARNING: In /path/itkNiftiImageIO.cxx, line 2314\nNiftiImageIO (0x..): text\n\n``) as one
    ``logging`` line of logger ``salseg.itk``: ``NiftiImageIO: text``."""

    def _line(self, text: str) -> str:
        lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
        lines = [ln for ln in lines if not ln.startswith(("WARNING: In ", "ERROR: In ", "Debug: In "))]
        return " ".join(re.sub(r"^(\w+) \(0x[0-9a-fA-F]+\):", r"\1:", ln) for ln in lines)

    def DisplayText(self, text):  # noqa: N802 - ITK's method names
        log.info("%s", self._line(text))

    def DisplayGenericOutputText(self, text):  # noqa: N802
        log.info("%s", self._line(text))

    def DisplayDebugText(self, text):  # noqa: N802
        log.debug("%s", self._line(text))

    def DisplayWarningText(self, text):  # noqa: N802
        log.warning("%s", self._line(text))

    def DisplayErrorText(self, text):  # noqa: N802
        log.error("%s", self._line(text))


_ITK_LOGGER = _OneLineLogger()
_ITK_LOGGER.SetAsGlobalITKLogger()


def _nonfinite(img: sitk.Image) -> int:
    if img.GetPixelIDValue() not in _FLOAT_PIXELS:
        return 0
    arr = sitk.GetArrayViewFromImage(img)
    return int(arr.size - np.count_nonzero(np.isfinite(arr)))


def read_sitk(path: str | Path) -> sitk.Image:
    """Read a file with SimpleITK; raises DataError naming it when the file is missing, truncated or unreadable,
    when its name is not UTF-8, when its header declares more voxels than fit in memory
    (:mod:`salseg.dataset.headers`) and when it holds NaN/Inf values (NIfTI's reader would turn them into 0)."""
    require_utf8_name(path)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        reader = read_header(path)
    except RuntimeError as e:
        verify_image_file(path)  # a cut or corrupt file gets its own message
        raise DataError(f"{path}: unreadable image ({_last_line(e)})") from None
    nonfinite = verify_image_file(path, count_nonfinite=True)  # SimpleITK zero-fills what a truncated file lacks
    try:
        img = reader.Execute()
    except RuntimeError as e:
        raise DataError(f"{path}: unreadable image ({_last_line(e)})") from None
    nonfinite = nonfinite or _nonfinite(img)
    if nonfinite:
        total = img.GetNumberOfPixels() * img.GetNumberOfComponentsPerPixel()
        raise DataError(f"{path}: {nonfinite} NaN/Inf value(s) among {total} voxels; replace them (e.g. by the "
                        f"background intensity) before using this file")
    return img


def _last_line(e: Exception) -> str:
    return str(e).strip().splitlines()[-1] if str(e).strip() else "unknown reason"


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


def read_image(path: str | Path) -> tuple[np.ndarray, dict]:
    """One image file -> (array (C, Z, Y, X) float32, props). RGB files give C = 3."""
    path = Path(path)
    img = read_sitk(path)
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


def _palette_indices(path: Path) -> np.ndarray | None:
    """The colour indices of a palette (indexed-colour) PNG/BMP/TIF/... as (Y, X); None for other images.
    (SimpleITK expands the palette to RGB colours, which are not the label values.)"""
    if file_ending(path) not in NATURAL_ENDINGS:
        return None
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "PA"):
                return None
            arr = np.array(im)
    except (OSError, ValueError):
        return None  # SimpleITK has read it; Pillow cannot
    return arr[..., 0] if arr.ndim == 3 else arr


def read_label_sitk(path: str | Path) -> sitk.Image:
    """A label file as a one-component SimpleITK image (geometry kept; checked as :func:`read_sitk` does).

    Palette (indexed-colour) images give their colour INDICES; a grey image stored as RGB(A) or grey + alpha keeps
    its first component; a colour-coded label map (RGB colours that differ per channel) is refused.
    """
    path = Path(path)
    img = read_sitk(path)
    indices = _palette_indices(path)
    if indices is not None and indices.shape == sitk.GetArrayViewFromImage(img).shape[:img.GetDimension()]:
        out = sitk.GetImageFromArray(np.ascontiguousarray(indices))
        out.CopyInformation(img)
        return out
    if img.GetNumberOfComponentsPerPixel() == 1:
        return img
    comps = _to_czyx(img, path)
    if comps.shape[0] >= 3:
        grey = (comps[0] == comps[1]) & (comps[0] == comps[2])
        if not grey.all():
            z, y, x = (int(i[0]) for i in np.nonzero(~grey))
            raise DataError(f"{path}: colour-coded label map (pixel {x},{y} is RGB "
                            f"{tuple(int(c) for c in comps[:3, z, y, x])}); save it as a greyscale or palette "
                            f"(indexed) image whose values are the class numbers (map each colour to its class)")
    return sitk.VectorIndexSelectionCast(img, 0)


def read_label(path: str | Path) -> tuple[np.ndarray, dict]:
    """A label file -> (array (Z, Y, X) integer, props); read as :func:`read_label_sitk` says."""
    path = Path(path)
    img = read_label_sitk(path)
    arr = _to_czyx(img, path)[0]
    if np.issubdtype(arr.dtype, np.floating) and not np.all(arr == np.round(arr)):
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
            text = _last_line(e).replace(str(tmp), str(path))  # the user's path, never the temporary one
            raise DataError(f"{path}: could not write the image ({text})") from None
        try:  # SimpleITK may report a short write (e.g. a full disk) only on stderr
            verify_image_file(tmp)
        except DataError as e:
            raise DataError(f"{path}: the written file is incomplete ({str(e).split('(', 1)[-1]}") from None


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
