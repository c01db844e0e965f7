"""GlaS (Warwick-QU gland segmentation, 2D RGB histology) -> Dataset042_GlaS.

Official layout: ``train_N.bmp`` + ``train_N_anno.bmp`` (-> imagesTr), ``testA_N`` / ``testB_N`` (-> imagesTs +
labelsTs), ``Grade.csv`` (its patient column groups the images of one patient). The subset layout
``Image/CaseN.bmp`` + ``Label/CaseN_label.bmp`` is read too (all training). Annotations are gland instance ids;
the semantic label is foreground = id > 0 (``instances=True`` keeps nothing else: salseg is semantic).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from salseg.convert.common import (RGB_CHANNELS, DatasetWriter, Progress, binary_mask, natural_key, read_rgb, refuse,
                                   report)
from salseg.errors import DataError

NAME, DATASET_ID = "GlaS", 42
OFFICIAL_RE = re.compile(r"^(?P<id>(train|testA|testB)_\d+)\.bmp$")


def _groups_from_grade_csv(path: Path) -> dict[str, str]:
    """image name -> patient id from Grade.csv (columns: name, patient ID, grade ...)."""
    if not path.is_file():
        return {}
    out = {}
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return out
    header = [h.strip().lower() for h in rows[0]]
    pcol = next((i for i, h in enumerate(header) if "patient" in h), None)
    if pcol is None:
        raise DataError(f"{path}: no 'patient ID' column in the header {rows[0]}")
    for row in rows[1:]:
        if len(row) > pcol and row[0].strip():
            out[row[0].strip()] = f"patient{row[pcol].strip()}"
    return out


def convert_glas(src: str | Path, root: str | Path, *, overwrite: bool = False, dataset_id: int | None = None,
                 progress: Progress = None) -> Path:
    src = Path(src)
    if not src.is_dir():
        raise DataError(f"{src}: source folder not found")
    items, problems = [], []    # (case id, image, label, test, group)
    if (src / "Image").is_dir():
        for img in sorted((src / "Image").glob("*.bmp"), key=lambda p: natural_key(p.name)):
            lab = src / "Label" / f"{img.stem}_label.bmp"
            if not lab.is_file():
                problems.append(f"{lab}: missing label for {img.name}")
            items.append((img.stem, img, lab, False, None))
    else:
        groups = _groups_from_grade_csv(src / "Grade.csv")
        for img in sorted(src.glob("*.bmp"), key=lambda p: natural_key(p.name)):
            m = OFFICIAL_RE.match(img.name)
            if not m:
                continue
            lab = src / f"{m['id']}_anno.bmp"
            if not lab.is_file():
                problems.append(f"{lab}: missing annotation for {img.name}")
            items.append((m["id"], img, lab, not m["id"].startswith("train"), groups.get(m["id"])))
        for anno in sorted(src.glob("*_anno.bmp")):
            if not (src / anno.name.replace("_anno", "")).is_file():
                problems.append(f"{anno}: annotation without image")
    refuse(problems)
    if not any(not t for *_, t, _g in items):
        raise DataError(f"{src}: no GlaS training images found (expected train_N.bmp + train_N_anno.bmp, or "
                        f"Image/CaseN.bmp + Label/CaseN_label.bmp)")
    with DatasetWriter(root, NAME, dataset_id or DATASET_ID, overwrite=overwrite, file_ending=".png",
                       explicit_id=dataset_id is not None) as w:
        for i, (cid, img_p, lab_p, test, group) in enumerate(items):
            img = read_rgb(img_p)
            w.add_case(cid, [img], binary_mask(lab_p, img, threshold=0), group=group, test=test)
            report(progress, "converting GlaS", i + 1, len(items))
        return w.finish(RGB_CHANNELS, {"background": 0, "gland": 1},
                        description="GlaS gland segmentation (foreground = instance id > 0)",
                        extra={"source": str(src)})
