"""FLARE 2021 (abdominal CT) -> Dataset050_FLARE21.

``<src>/TrainingImg/train_000_0000.nii.gz`` + ``<src>/TrainingMask/train_000.nii.gz`` (labels 1 liver, 2 kidney,
3 spleen, 4 pancreas); ``ValidationImg/`` and ``TestImg/`` (same ``_0000`` naming) go to imagesTs when present.
"""

from __future__ import annotations

import re
from pathlib import Path

from salseg.convert.common import DatasetWriter, Progress, read_sitk, refuse, report
from salseg.errors import DataError

NAME, DATASET_ID = "FLARE21", 50
LABELS = {"background": 0, "liver": 1, "kidney": 2, "spleen": 3, "pancreas": 4}
IMG_RE = re.compile(r"^(?P<id>.+)_0000\.nii\.gz$")


def convert_flare21(src: str | Path, root: str | Path, *, overwrite: bool = False, dataset_id: int | None = None,
                    progress: Progress = None) -> Path:
    src = Path(src)
    img_dir, mask_dir = src / "TrainingImg", src / "TrainingMask"
    refuse([f"{d}: missing folder (FLARE21 layout <src>/TrainingImg + <src>/TrainingMask)"
            for d in (img_dir, mask_dir) if not d.is_dir()])
    train, problems = [], []
    for img in sorted(img_dir.glob("*.nii.gz")):
        m = IMG_RE.match(img.name)
        if not m:
            problems.append(f"{img}: not named <case>_0000.nii.gz")
            continue
        mask = mask_dir / f"{m['id']}.nii.gz"
        if not mask.is_file():
            problems.append(f"{mask}: missing mask for {img.name}")
        train.append((m["id"], img, mask))
    for mask in sorted(mask_dir.glob("*.nii.gz")):
        if not (img_dir / mask.name.replace(".nii.gz", "_0000.nii.gz")).is_file():
            problems.append(f"{mask}: mask without image")
    test = []
    for sub in ("ValidationImg", "TestImg"):
        for img in sorted((src / sub).glob("*_0000.nii.gz")) if (src / sub).is_dir() else []:
            test.append((IMG_RE.match(img.name)["id"], img))
    refuse(problems)
    if not train:
        raise DataError(f"{img_dir}: no <case>_0000.nii.gz images found")
    total = len(train) + len(test)
    with DatasetWriter(root, NAME, dataset_id or DATASET_ID, overwrite=overwrite,
                       explicit_id=dataset_id is not None) as w:
        for i, (cid, img, mask) in enumerate(train):
            w.add_case(cid, [read_sitk(img)], read_sitk(mask))
            report(progress, "converting FLARE21", i + 1, total)
        for j, (cid, img) in enumerate(test):
            w.add_case(cid, [read_sitk(img)], None, test=True)
            report(progress, "converting FLARE21", len(train) + j + 1, total)
        return w.finish({"0": "CT"}, LABELS, description="FLARE 2021 abdominal organs CT",
                        extra={"source": str(src)})
