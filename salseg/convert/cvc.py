"""CVC-ClinicDB (colonoscopy frames, 2D RGB) -> Dataset041_CVCClinicDB.

``<src>/Original/1.tif`` + ``<src>/Ground Truth/1.tif`` (mask 0 / 255), or the PNG copies ``<src>/PNG/Original``
+ ``<src>/PNG/Ground Truth``. Frames keep their order (case ids ``frame_0001`` ...). The frames come from 29 video
sequences; pass ``sequences_csv`` (rows ``first,last`` or ``sequence,first,last``, header optional) so that every
frame gets its sequence as group and splits never put neighbouring frames of one video in different folds.
Without it each frame is its own group.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from salseg.convert.common import RGB_CHANNELS, DatasetWriter, Progress, binary_mask, read_rgb, refuse, report
from salseg.errors import DataError

log = logging.getLogger(__name__)
NAME, DATASET_ID = "CVCClinicDB", 41
ENDINGS = (".tif", ".tiff", ".png")


def read_sequences(path: Path) -> list[tuple[str, int, int]]:
    """[(sequence id, first frame, last frame)] from a CSV; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: sequence CSV not found")
    out = []
    with open(path, newline="") as f:
        for i, row in enumerate(csv.reader(f), start=1):
            row = [c.strip() for c in row if c.strip()]
            if not row or row[0].startswith("#"):
                continue
            try:
                nums = [int(c) for c in row[-2:]]
            except ValueError:
                if i == 1:
                    continue  # header
                raise DataError(f"{path}: line {i}: expected '[sequence,]first,last' frame numbers, got {row}")
            seq = row[0] if len(row) >= 3 else f"seq{len(out) + 1:02d}"
            if nums[0] > nums[1]:
                raise DataError(f"{path}: line {i}: first frame {nums[0]} after last frame {nums[1]}")
            out.append((seq, nums[0], nums[1]))
    return out


def _frames(folder: Path) -> dict[int, Path]:
    out = {}
    for p in folder.iterdir():
        if p.suffix.lower() in ENDINGS and p.stem.isdigit():
            out[int(p.stem)] = p
    return out


def convert_cvc(src: str | Path, root: str | Path, *, sequences_csv: str | Path | None = None,
                overwrite: bool = False, dataset_id: int | None = None, progress: Progress = None) -> Path:
    src = Path(src)
    if not src.is_dir():
        raise DataError(f"{src}: source folder not found")
    base = src if (src / "Original").is_dir() else src / "PNG"
    img_dir, gt_dir = base / "Original", base / "Ground Truth"
    refuse([f"{d}: missing folder (CVC-ClinicDB layout <src>/Original + <src>/Ground Truth, or <src>/PNG/...)"
            for d in (img_dir, gt_dir) if not d.is_dir()])
    images, masks = _frames(img_dir), _frames(gt_dir)
    problems = [f"{gt_dir}/{n}{images[n].suffix}: missing ground truth for frame {n}" for n in images if n not in masks]
    problems += [f"{masks[n]}: ground truth without image" for n in masks if n not in images]
    refuse(problems)
    if not images:
        raise DataError(f"{img_dir}: no numbered frames (1.tif, 2.tif, ...) found")
    groups: dict[int, str] = {}
    if sequences_csv is not None:
        for seq, first, last in read_sequences(Path(sequences_csv)):
            for n in range(first, last + 1):
                if n in groups:
                    raise DataError(f"{sequences_csv}: frame {n} is in two sequences ({groups[n]}, {seq})")
                groups[n] = seq
        outside = sorted(n for n in images if n not in groups)
        if outside:
            raise DataError(f"{sequences_csv}: frames {outside[:10]} are in no sequence")
    else:
        log.warning("no --sequences CSV: each CVC-ClinicDB frame is its own group (neighbouring frames of a "
                    "video may fall in different folds)")
    order = sorted(images)
    with DatasetWriter(root, NAME, dataset_id or DATASET_ID, overwrite=overwrite, file_ending=".png",
                       explicit_id=dataset_id is not None) as w:
        for i, n in enumerate(order):
            img = read_rgb(images[n])
            cid = f"frame_{n:04d}"
            w.add_case(cid, [img], binary_mask(masks[n], img, threshold=127), group=groups.get(n, cid))
            report(progress, "converting CVC-ClinicDB", i + 1, len(order))
        return w.finish(RGB_CHANNELS, {"background": 0, "polyp": 1},
                        description="CVC-ClinicDB polyp segmentation (frames in video order)",
                        extra={"source": str(src), "frame_order": [f"frame_{n:04d}" for n in order]})
