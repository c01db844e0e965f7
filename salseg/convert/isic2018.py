"""ISIC 2018 Task 1 (dermoscopy lesion segmentation, 2D RGB) -> Dataset040_ISIC2018.

``<src>/ISIC2018_Task1-2_<Split>_Input/ISIC_0000000.jpg`` with
``<src>/ISIC2018_Task1_<Split>_GroundTruth/ISIC_0000000_segmentation.png`` (0 / 255), Split = Training,
Validation, Test. Training -> imagesTr; Validation and Test -> imagesTs (+ labelsTs where ground truth exists),
unless ``validation_to_train``. Images are written as lossless PNG (``_0000.png``, 3 channels R, G, B).
"""

from __future__ import annotations

from pathlib import Path

from salseg.convert.common import (RGB_CHANNELS, DatasetWriter, Progress, binary_mask, read_rgb, refuse, report)
from salseg.errors import DataError

NAME, DATASET_ID = "ISIC2018", 40
SPLITS = ("Training", "Validation", "Test")


def _split_pairs(src: Path, split: str, need_gt: bool) -> tuple[list[tuple[str, Path, Path | None]], list[str]]:
    inp = src / f"ISIC2018_Task1-2_{split}_Input"
    gt = src / f"ISIC2018_Task1_{split}_GroundTruth"
    if not inp.is_dir():
        return [], ([f"{inp}: missing folder (ISIC 2018 Task 1 layout)"] if need_gt else [])
    if need_gt and not gt.is_dir():
        return [], [f"{gt}: missing folder (ground truth of the {split} images)"]
    pairs, problems = [], []
    for img in sorted(inp.glob("ISIC_*.jpg")):
        cid = img.name[:-4]
        mask = gt / f"{cid}_segmentation.png"
        if not mask.is_file():
            if need_gt or gt.is_dir():
                problems.append(f"{mask}: missing ground truth for {img.name}")
            mask = None
        pairs.append((cid, img, mask))
    if gt.is_dir():
        for mask in sorted(gt.glob("ISIC_*_segmentation.png")):
            if not (inp / (mask.name[: -len("_segmentation.png")] + ".jpg")).is_file():
                problems.append(f"{mask}: ground truth without image")
    return pairs, problems


def convert_isic2018(src: str | Path, root: str | Path, *, validation_to_train: bool = False,
                     overwrite: bool = False, dataset_id: int | None = None, progress: Progress = None) -> Path:
    src = Path(src)
    if not src.is_dir():
        raise DataError(f"{src}: source folder not found")
    splits, problems = {}, []
    for split in SPLITS:
        pairs, probs = _split_pairs(src, split, need_gt=split == "Training")
        splits[split], problems = pairs, problems + probs
    refuse(problems)
    if not splits["Training"]:
        raise DataError(f"{src / 'ISIC2018_Task1-2_Training_Input'}: no ISIC_*.jpg images found")
    total, done = sum(len(v) for v in splits.values()), 0
    with DatasetWriter(root, NAME, dataset_id or DATASET_ID, overwrite=overwrite, file_ending=".png",
                       explicit_id=dataset_id is not None) as w:
        for split, pairs in splits.items():
            test = not (split == "Training" or (split == "Validation" and validation_to_train))
            for cid, img_p, mask_p in pairs:
                img = read_rgb(img_p)
                lab = binary_mask(mask_p, img, threshold=127) if mask_p is not None else None
                if lab is None and not test:
                    raise DataError(f"{img_p}: no ground truth for a training image")
                w.add_case(cid, [img], lab, test=test)
                done += 1
                report(progress, "converting ISIC 2018", done, total)
        return w.finish(RGB_CHANNELS, {"background": 0, "lesion": 1},
                        description="ISIC 2018 Task 1 lesion segmentation", extra={"source": str(src)})
