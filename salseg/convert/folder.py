"""Generic importer: any image folder + label folder whose file names pair up.

Pairing, in order: ``<label stem> == <image stem><label_suffix>`` (``Case1.nii.gz`` + ``Case1_label.nii.gz``);
a single image with a single label; else the label sharing the most ``_``-separated name parts with the image
(``sub-ct_label-22_ct`` + ``sub-ct_seg-vert_label-22_msk``), which must be unique and mutual. Images and labels
may live in one folder: then ``image_glob`` / ``label_glob`` tell them apart. The label values found in the data
are declared in dataset.json (``label_<v>``, or names from ``label_names``); ``binary`` maps every value > 0 to 1.
Geometry is copied exactly (SimpleITK read/write, no resampling). Volumes keep their file format; 2D natural
images (PNG/BMP/JPG/TIF) are written as PNG.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from salseg.convert.common import (RGB_CHANNELS, DatasetWriter, Progress, label_image, natural_key, read_sitk, refuse,
                                   report)
from salseg.dataset.io import NATURAL_ENDINGS, VOLUME_ENDINGS, file_ending, read_label_sitk
from salseg.dataset.naming import DATASET_RE, list_datasets, next_free_id
from salseg.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def _stem(p: Path) -> str:
    return p.name[: -len(file_ending(p))]


def _list(folder: Path, glob: str | None, exclude_suffix: str | None = None,
          only_suffix: str | None = None) -> list[Path]:
    out = []
    for p in sorted(folder.iterdir(), key=lambda q: natural_key(q.name)):
        if p.name.startswith(".") or not p.is_file() or file_ending(p) not in VOLUME_ENDINGS + NATURAL_ENDINGS:
            continue
        if glob and not fnmatch.fnmatch(p.name, glob):
            continue
        if exclude_suffix and _stem(p).endswith(exclude_suffix):
            continue
        if only_suffix and not _stem(p).endswith(only_suffix):
            continue
        out.append(p)
    return out


def _tokens(stem: str) -> set[str]:
    return {t for t in re.split(r"[_]", stem) if t}


def pair_files(images: list[Path], labels: list[Path], label_suffix: str) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Pairs (image, label) and problems (unpaired files, each named)."""
    by_stem = {_stem(lab): lab for lab in labels}
    pairs, left_imgs, used = [], [], set()
    for img in images:
        lab = by_stem.get(_stem(img) + label_suffix)
        if lab is not None and lab not in used:
            pairs.append((img, lab))
            used.add(lab)
        else:
            left_imgs.append(img)
    left_labs = [lab for lab in labels if lab not in used]
    if len(left_imgs) == 1 and len(left_labs) == 1:
        return pairs + [(left_imgs[0], left_labs[0])], []
    score = {(i, j): len(_tokens(_stem(a)) & _tokens(_stem(b)))
             for i, a in enumerate(left_imgs) for j, b in enumerate(left_labs)}
    matched_i, matched_j = set(), set()
    for i, img in enumerate(left_imgs):
        row = [score[(i, j)] for j in range(len(left_labs))]
        if not row or max(row) == 0 or row.count(max(row)) > 1:
            continue
        j = int(np.argmax(row))
        col = [score[(k, j)] for k in range(len(left_imgs))]
        if col.count(max(col)) == 1 and int(np.argmax(col)) == i:
            pairs.append((img, left_labs[j]))
            matched_i.add(i)
            matched_j.add(j)
    problems = [f"{img}: no matching label (expected {_stem(img)}{label_suffix}{file_ending(img)} or one name "
                f"sharing its parts)" for i, img in enumerate(left_imgs) if i not in matched_i]
    problems += [f"{lab}: label without a matching image" for j, lab in enumerate(left_labs) if j not in matched_j]
    pairs.sort(key=lambda pr: natural_key(pr[0].name))
    return pairs, problems


def _case_id(img: Path) -> str:
    stem = re.sub(r"_\d{4}$", "", _stem(img))
    return re.sub(r"[^A-Za-z0-9_\-.]", "_", stem)


def _existing_id(root: Path, name: str) -> int:
    """The id of an existing dataset of that name (so that --overwrite replaces it), else the next free id."""
    for d in list_datasets(root):
        m = DATASET_RE.match(d)
        if m["name"] == name:
            return int(m["id"])
    return next_free_id(root)


IMAGE_FOLDERS = ("Image", "Images", "images", "imagesTr")
LABEL_FOLDERS = ("Label", "Labels", "labels", "labelsTr")


def source_folders(src: str | Path | None, images: str | Path | None = None,
                   labels: str | Path | None = None) -> tuple[Path, Path]:
    """The image and label folders: those given, else the first of :data:`IMAGE_FOLDERS` / :data:`LABEL_FOLDERS`
    found in ``src``, else ``src`` itself (images and labels side by side)."""
    if images is not None and labels is not None:
        return Path(images), Path(labels)
    if src is None:
        raise ConfigError("give SRC (holding Image/ and Label/) or both --images and --labels")
    base = Path(src)
    found = [next((base / n for n in names if (base / n).is_dir()), base) for names in (IMAGE_FOLDERS, LABEL_FOLDERS)]
    return (Path(images) if images is not None else found[0]), (Path(labels) if labels is not None else found[1])


def generic_label_names(labels: dict[str, int]) -> list[int]:
    """The label values that still carry the placeholder name ``label_<v>`` (no ``label_names`` given for them)."""
    return sorted(v for name, v in labels.items() if v != 0 and name == f"label_{v}")


def convert_folder(images: str | Path, labels: str | Path, root: str | Path, *, name: str | None = None,
                   label_suffix: str = "_label", image_glob: str | None = None, label_glob: str | None = None,
                   binary: bool = False, modality: str | None = None, label_names: dict[int, str] | None = None,
                   overwrite: bool = False, dataset_id: int | None = None, progress: Progress = None) -> Path:
    """Import an image folder + label folder as a raw dataset; returns its folder."""
    images, labels, root = Path(images), Path(labels), Path(root)
    refuse([f"{d}: folder not found" for d in {images, labels} if not d.is_dir()])
    same = images.resolve() == labels.resolve()
    if same and not (image_glob or label_glob):
        imgs = _list(images, None, exclude_suffix=label_suffix)
        labs = _list(labels, None, only_suffix=label_suffix)
    else:
        imgs = _list(images, image_glob)
        labs = _list(labels, label_glob)
        if same:
            imgs = [p for p in imgs if p not in set(labs)]
    if not imgs:
        raise DataError(f"{images}: no image files found" + (f" matching {image_glob!r}" if image_glob else ""))
    pairs, problems = pair_files(imgs, labs, label_suffix)
    refuse(problems, "cannot pair images and labels")
    endings = {file_ending(p) for p in imgs}
    natural = endings <= set(NATURAL_ENDINGS)
    if not natural and not endings <= set(VOLUME_ENDINGS):
        raise DataError(f"{images}: mixes 2D natural images and volumes ({sorted(endings)})")
    out_ending = ".png" if natural else (endings.pop() if len(endings) == 1 else ".nii.gz")
    name = name or re.sub(r"[^A-Za-z0-9_\-]", "", images.name if images.name.lower() not in (
        "image", "images", "imagestr", "img") else images.parent.name) or "Imported"
    did = dataset_id if dataset_id is not None else _existing_id(root, name)
    values: set[int] = set()
    channels: dict[str, str] | None = None
    with DatasetWriter(root, name, did, overwrite=overwrite, file_ending=out_ending, explicit_id=True) as w:
        for i, (img_p, lab_p) in enumerate(pairs):
            img = read_sitk(img_p)
            ncomp = img.GetNumberOfComponentsPerPixel()
            if natural and ncomp == 4:
                img = sitk.Compose(*[sitk.VectorIndexSelectionCast(img, c) for c in range(3)])
                ncomp = 3
            if channels is None:
                if natural and ncomp == 3:
                    channels = dict(RGB_CHANNELS)
                else:
                    if modality is None:
                        lo = float(sitk.GetArrayViewFromImage(img).min())
                        modality = "CT" if lo < -500 else ("gray" if natural else "MRI")
                        log.info("channel name %s (from %s; set --modality to override)", modality, img_p.name)
                    channels = {"0": modality}
            lab = read_label_sitk(lab_p)  # palette maps as indices; colour-coded maps refused
            arr = sitk.GetArrayFromImage(lab)
            if np.issubdtype(arr.dtype, np.floating):
                if not np.all(arr == np.round(arr)):
                    raise DataError(f"{lab_p}: label map has non-integer values")
            arr = arr.astype(np.int64)
            if arr.min(initial=0) < 0:
                raise DataError(f"{lab_p}: negative label values")
            if binary:
                arr = (arr > 0).astype(np.uint8)
            values |= set(int(v) for v in np.unique(arr))
            w.add_case(_case_id(img_p), [img], label_image(arr, lab))
            report(progress, f"importing {name}", i + 1, len(pairs))
        names = dict(label_names or {})
        if binary:
            labels_json = {"background": 0, names.get(1, "foreground"): 1}
        else:
            labels_json = {"background": 0}
            for v in sorted(values - {0}):
                labels_json[names.get(v, f"label_{v}")] = v
        return w.finish(channels or {"0": modality or "MRI"}, labels_json,
                        description=f"imported from {images} and {labels}",
                        extra={"source": {"images": str(images), "labels": str(labels)}})
