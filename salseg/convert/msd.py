"""Medical Segmentation Decathlon task folder (``TaskNN_Name``) -> ``DatasetNNN_Name`` (as nnU-Net's
``nnUNetv2_convert_MSD_dataset``).

```
<src>/dataset.json        MSD schema: "modality" {"0": "FLAIR", ...}, "labels" {"0": "background", "1": ...},
                          "training" [{"image": "./imagesTr/X.nii.gz", "label": "./labelsTr/X.nii.gz"}], "test" [...]
<src>/imagesTr/X.nii.gz   3D, or 4D with one volume per modality (Task01 BrainTumour, Task05 Prostate)
<src>/labelsTr/X.nii.gz
<src>/imagesTs/Y.nii.gz
```
A 4D image is split into ``X_0000 .. X_000N`` channel files that keep the spatial geometry (the first three axes of
spacing, origin and direction). macOS ``._`` files are skipped. ``regions=True`` (Task01 BrainTumour only) writes
BraTS-style regions: whole tumour (1, 2, 3), tumour core (2, 3), enhancing tumour (3), ``regions_class_order``
[1, 2, 3].
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from salseg.convert.common import DatasetWriter, Progress, read_sitk, refuse, report
from salseg.errors import DataError

TASK_RE = re.compile(r"^Task(?P<id>\d{2,3})_(?P<name>[A-Za-z0-9]+)$")
BRAIN_TUMOUR_LABELS = {0: "background", 1: "edema", 2: "non-enhancing tumor", 3: "enhancing tumour"}
BRATS_REGIONS = {"background": 0, "whole tumour": [1, 2, 3], "tumour core": [2, 3], "enhancing tumour": [3]}


def split_channels(img: sitk.Image, n_channels: int, path: Path) -> list[sitk.Image]:
    """A 3D image (one channel) or a 4D image with ``n_channels`` volumes -> 3D channel images, geometry kept."""
    dim = img.GetDimension()
    if dim == 3 and n_channels == 1:
        return [img]
    if dim != 4:
        raise DataError(f"{path}: {dim}D image, but dataset.json 'modality' declares {n_channels} channel(s) "
                        f"(expected {'3D' if n_channels == 1 else '4D'})")
    size = img.GetSize()
    if size[3] != n_channels:
        raise DataError(f"{path}: 4D image with {size[3]} volumes, but dataset.json 'modality' declares "
                        f"{n_channels} channel(s)")
    arr = sitk.GetArrayFromImage(img)                        # (C, Z, Y, X)
    direction = np.asarray(img.GetDirection()).reshape(4, 4)[:3, :3].ravel()
    out = []
    for c in range(n_channels):
        ch = sitk.GetImageFromArray(arr[c])
        ch.SetSpacing(img.GetSpacing()[:3])
        ch.SetOrigin(img.GetOrigin()[:3])
        ch.SetDirection([float(v) for v in direction])
        out.append(ch)
    return out


def _listed(src: Path, entries, key: str | None) -> tuple[list[Path], list[str]]:
    paths, problems = [], []
    for e in entries:
        rel = e.get(key) if key and isinstance(e, dict) else e
        if not isinstance(rel, str):
            problems.append(f"{src / 'dataset.json'}: bad entry {e!r} (expected a path like ./imagesTr/X.nii.gz)")
            continue
        p = (src / rel).resolve()
        if src.resolve() not in p.parents:
            problems.append(f"{src / 'dataset.json'}: entry {rel!r} points outside the task folder")
        elif not p.is_file():
            problems.append(f"{p}: missing file listed in dataset.json")
        else:
            paths.append(p)
    return paths, problems


def _case_id(path: Path) -> str:
    return path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.stem


def _read_task(src: Path) -> tuple[dict, dict[str, str], dict[str, int]]:
    """The MSD dataset.json with its channel names and labels (name -> value); malformed -> DataError."""
    path = src / "dataset.json"
    refuse([f"{path}: missing (an MSD task folder holds dataset.json, imagesTr/, labelsTr/)"]
           if not path.is_file() else [])
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise DataError(f"{path}: expected a JSON object")
    modality, labels = d.get("modality"), d.get("labels")
    if not isinstance(modality, dict) or not modality or sorted(modality) != [str(i) for i in range(len(modality))]:
        raise DataError(f"{path}: field 'modality' must map 0..C-1 to channel names, got {modality!r}")
    if not isinstance(labels, dict) or not all(k.isdigit() and isinstance(v, str) for k, v in labels.items()) \
            or "0" not in labels:
        raise DataError(f"{path}: field 'labels' must map label values (\"0\", \"1\", ...) to names, got {labels!r}")
    names = {}
    for k, v in sorted(labels.items(), key=lambda kv: int(kv[0])):
        if v in names:
            raise DataError(f"{path}: field 'labels': the name {v!r} is used twice")
        names[v] = int(k)
    return d, {k: str(v) for k, v in sorted(modality.items(), key=lambda kv: int(kv[0]))}, names


def convert_msd(src: str | Path, root: str | Path, *, regions: bool = False, overwrite: bool = False,
                dataset_id: int | None = None, progress: Progress = None) -> Path:
    """Convert MSD task folder ``src`` (``TaskNN_Name``); returns the raw dataset folder written."""
    src = Path(src)
    m = TASK_RE.match(src.name)
    if not m:
        raise DataError(f"{src}: not an MSD task folder name (expected TaskNN_Name, e.g. Task01_BrainTumour)")
    d, channels, labels = _read_task(src)
    if regions and {v: k for k, v in labels.items()} != BRAIN_TUMOUR_LABELS:
        raise DataError(f"{src / 'dataset.json'}: --regions writes BraTS regions and needs Task01_BrainTumour's "
                        f"labels 0-3 (background, edema, non-enhancing tumor, enhancing tumour), got {labels}")
    training = d.get("training")
    if isinstance(training, list) and training:
        images, problems = _listed(src, training, "image")
        label_files, more = _listed(src, training, "label")
        problems += more
    else:
        images = sorted(p for p in (src / "imagesTr").glob("*.nii.gz") if not p.name.startswith("._"))
        label_files = [src / "labelsTr" / p.name for p in images]
        problems = [f"{p}: missing label for {src / 'imagesTr' / p.name}" for p in label_files if not p.is_file()]
    if not images and not problems:
        problems.append(f"{src / 'imagesTr'}: no training images (*.nii.gz)")
    tests, more = _listed(src, d.get("test") or [], None)
    problems += more
    refuse(problems)
    n = len(channels)
    total = len(images) + len(tests)
    with DatasetWriter(root, m["name"], dataset_id or int(m["id"]), overwrite=overwrite,
                       explicit_id=dataset_id is not None) as w:
        for i, (img, lab) in enumerate(zip(images, label_files)):
            chans = split_channels(read_sitk(img), n, img)
            label = read_sitk(lab)
            if label.GetSize() != chans[0].GetSize():
                raise DataError(f"{lab}: label size {label.GetSize()} differs from its image's "
                                f"{chans[0].GetSize()[:3]}")
            w.add_case(_case_id(img), chans, label)
            report(progress, f"converting {src.name}", i + 1, total)
        for j, img in enumerate(tests):
            w.add_case(_case_id(img), split_channels(read_sitk(img), n, img), None, test=True)
            report(progress, f"converting {src.name}", len(images) + j + 1, total)
        extra = {"source": str(src), "msd_task": src.name}
        extra.update({k: d[k] for k in ("reference", "licence", "release") if isinstance(d.get(k), str)})
        if regions:
            extra["regions_class_order"] = [1, 2, 3]
        return w.finish(channels, dict(BRATS_REGIONS) if regions else labels,
                        description=str(d.get("description") or d.get("name") or src.name), extra=extra)
