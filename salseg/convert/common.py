"""Shared by every converter: choosing the target folder, writing cases, dataset.json with groups.

A conversion writes into a hidden temporary folder beside the target and renames it at the end, so a refused
tree or an interrupted run never leaves a half-written dataset. A malformed source tree is refused with one
:class:`~salseg.errors.DataError` that names every missing or bad file.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import SimpleITK as sitk

from salseg.dataset.dataset_json import DatasetInfo, write_dataset_json
from salseg.dataset.io import NATURAL_ENDINGS, file_ending, read_sitk
from salseg.dataset.naming import DATASET_RE, dataset_folder_name, list_datasets, next_free_id
from salseg.errors import DataError, SalsegError
from salseg.fileio import atomic_path
from salseg.results import raw_dir, raw_root

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None] | None

RGB_CHANNELS = {"0": "R", "1": "G", "2": "B"}


def natural_key(s: str) -> list:
    """Sort key that orders ``case2`` before ``case10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def refuse(problems: Sequence[str], header: str = "malformed source tree") -> None:
    if problems:
        raise DataError(f"{header}:\n" + "\n".join(problems))


def target_id(root: Path, preferred: int, name: str) -> int:
    """``preferred`` unless another dataset (different name) already uses that id; then the next free id."""
    for d in list_datasets(root):
        m = DATASET_RE.match(d)
        if int(m["id"]) == preferred and m["name"] != name:
            new = next_free_id(root)
            log.warning("dataset id %03d is taken by %s; using %03d for %s", preferred, d, new, name)
            return new
    return preferred


def label_image(arr: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """An integer label array (same grid as ``reference``) as uint8/int16 SimpleITK image with its geometry."""
    arr = np.asarray(arr)
    dtype = np.uint8 if arr.min(initial=0) >= 0 and arr.max(initial=0) < 256 else np.int16
    img = sitk.GetImageFromArray(arr.astype(dtype))
    img.CopyInformation(reference)
    return img


def scalar_components(img: sitk.Image) -> sitk.Image:
    """First component of a multi-component image (masks stored as RGB)."""
    if img.GetNumberOfComponentsPerPixel() > 1:
        return sitk.VectorIndexSelectionCast(img, 0)
    return img


def array_image(arr: np.ndarray, spacing_zyx: Sequence[float], origin=None, direction=None) -> sitk.Image:
    """A (Z, Y, X) or (Y, X) numpy array as a SimpleITK image with the given spacing (z, y, x order)."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    sp = [float(s) for s in spacing_zyx][::-1][: img.GetDimension()]
    img.SetSpacing(sp)
    if origin is not None:
        img.SetOrigin(origin)
    if direction is not None:
        img.SetDirection(direction)
    return img


class DatasetWriter:
    """Writes one raw dataset (nnU-Net v2 layout) into a temporary folder, published by :meth:`finish`.

    Use as a context manager: leaving the block with an error removes the temporary folder.
    """

    def __init__(self, root: str | Path, name: str, dataset_id: int, *, overwrite: bool = False,
                 file_ending: str = ".nii.gz", explicit_id: bool = False):
        self.root = Path(root)
        self.name = name
        did = dataset_id if explicit_id else target_id(self.root, dataset_id, name)
        self.folder_name = dataset_folder_name(did, name)
        self.final = raw_dir(self.root, self.folder_name)
        if self.final.exists() and not overwrite:
            raise SalsegError(f"{self.final}: dataset folder already exists (use --overwrite to replace it)")
        if explicit_id:
            clash = [d for d in list_datasets(self.root)
                     if int(DATASET_RE.match(d)["id"]) == did and d != self.folder_name]
            if clash:
                raise SalsegError(f"dataset id {did:03d} is already used by {clash[0]}; choose another --id")
        self.overwrite = overwrite
        self.file_ending = file_ending
        self.groups: dict[str, str] = {}
        self.train_ids: list[str] = []
        self.test_ids: list[str] = []
        raw_root(self.root).mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.folder_name}.partial-", dir=raw_root(self.root)))

    # -- context manager -------------------------------------------------------------------------------------
    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- writing ---------------------------------------------------------------------------------------------
    def _write(self, img: sitk.Image, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        end = file_ending(path)
        if end in NATURAL_ENDINGS and img.GetPixelID() not in (sitk.sitkUInt8, sitk.sitkVectorUInt8):
            img = sitk.Cast(img, sitk.sitkVectorUInt8 if img.GetNumberOfComponentsPerPixel() > 1 else sitk.sitkUInt8)
        with atomic_path(path, end) as tmp:
            sitk.WriteImage(img, str(tmp), useCompression=end in (".nii.gz", ".mha", ".nrrd"))

    def add_case(self, case_id: str, images: Sequence[sitk.Image], label: sitk.Image | None = None, *,
                 group: str | None = None, test: bool = False) -> None:
        """One case: channel images (``_0000``, ``_0001`` ...) and its label, in ``Tr`` or ``Ts``."""
        if case_id in self.groups:
            raise DataError(f"case id {case_id!r} occurs twice in the source tree")
        sub = "Ts" if test else "Tr"
        for c, img in enumerate(images):
            self._write(img, self.tmp / f"images{sub}" / f"{case_id}_{c:04d}{self.file_ending}")
        if label is not None:
            self._write(label, self.tmp / f"labels{sub}" / f"{case_id}{self.file_ending}")
        elif not test:
            raise DataError(f"training case {case_id!r} has no label")
        self.groups[case_id] = group or case_id
        (self.test_ids if test else self.train_ids).append(case_id)

    def finish(self, channel_names: dict[str, str], labels: dict[str, int], description: str = "",
               extra: dict | None = None) -> Path:
        """Write dataset.json and move the dataset into place; returns the raw dataset folder."""
        if not self.train_ids:
            raise DataError("no training cases found in the source tree")
        groups = {c: self.groups[c] for c in self.train_ids}
        info = DatasetInfo(name=self.name, channel_names=dict(channel_names), labels=dict(labels),
                           num_training=len(self.train_ids), file_ending=self.file_ending, groups=groups,
                           description=description, extra=dict(extra or {}))
        write_dataset_json(self.tmp, info)
        for sub in ("imagesTr", "labelsTr"):
            (self.tmp / sub).mkdir(exist_ok=True)
        if self.final.exists():
            old = self.final.with_name(f".{self.final.name}.old-{self.tmp.name[-8:]}")
            self.final.rename(old)
            self.tmp.rename(self.final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            self.tmp.rename(self.final)
        log.debug("wrote %s (%d training, %d test cases)", self.final, len(self.train_ids), len(self.test_ids))
        return self.final


def report(progress: Progress, description: str, done: int, total: int) -> None:
    if progress is not None:
        progress(description, done, total)


def read_rgb(path: Path) -> sitk.Image:
    """A 2D natural image as an RGB (3-component uint8) SimpleITK image; grey images are replicated."""
    img = read_sitk(path)
    if img.GetDimension() != 2:
        raise DataError(f"{path}: expected a 2D image, got {img.GetDimension()}D")
    n = img.GetNumberOfComponentsPerPixel()
    if n == 1:
        img = sitk.Compose(img, img, img)
    elif n == 4:
        img = sitk.Compose(*[sitk.VectorIndexSelectionCast(img, i) for i in range(3)])
    elif n != 3:
        raise DataError(f"{path}: expected an RGB or grey image, got {n} components")
    return sitk.Cast(img, sitk.sitkVectorUInt8)


def binary_mask(path: Path, reference: sitk.Image, threshold: float = 0) -> sitk.Image:
    """A 2D mask file -> 0/1 uint8 label (value > ``threshold`` is foreground) on ``reference``'s grid."""
    mask = scalar_components(read_sitk(path))
    if mask.GetSize() != reference.GetSize():
        raise DataError(f"{path}: mask size {mask.GetSize()} differs from its image's {reference.GetSize()}")
    arr = sitk.GetArrayFromImage(mask)
    return label_image((arr > threshold).astype(np.uint8), reference)
