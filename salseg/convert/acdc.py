"""ACDC (cardiac cine MRI) -> Dataset027_ACDC, from the official layout or MT-UNet's npz form.

Official: ``<src>/training/patientNNN/{Info.cfg, patientNNN_frameFF.nii.gz, patientNNN_frameFF_gt.nii.gz}`` (ED and
ES frames named by Info.cfg), ``<src>/testing/...`` the same (-> imagesTs/labelsTs). ``<src>`` may also be the folder
holding ``database/``. Case ids ``patientNNN_frameFF``, both frames of a patient in group ``patientNNN``.

MT-UNet (used by the SA-LSTM code): ``train|valid/case_001_sliceED_0.npz`` (keys ``img``, ``label``, one slice each)
are stacked per case and frame into volumes (training), ``test/case_002_volume_ED.npz`` (volumes) go to imagesTs
with labelsTs; ``lists_ACDC/{train,valid,test}.txt`` (when present) name the files to use. These npz files carry no
geometry: spacing comes from ``spacing`` (z, y, x; default 10 x 1.5625 x 1.5625 mm).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from salseg.convert.common import DatasetWriter, Progress, array_image, label_image, read_sitk, refuse, report
from salseg.errors import DataError

NAME, DATASET_ID = "ACDC", 27
LABELS = {"background": 0, "RV": 1, "MLV": 2, "LVC": 3}
NPZ_SPACING = (10.0, 1.5625, 1.5625)
SLICE_RE = re.compile(r"^(?P<case>case_\d+)_slice(?P<frame>ED|ES)_(?P<idx>\d+)\.npz$")
VOLUME_RE = re.compile(r"^(?P<case>case_\d+)_volume_(?P<frame>ED|ES)\.npz$")


def read_info_cfg(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def _official_patients(split_dir: Path, need_labels: bool) -> tuple[list[tuple[str, list[tuple[Path, Path | None]]]],
                                                                   list[str]]:
    problems, patients = [], []
    for pdir in sorted(p for p in split_dir.iterdir() if p.is_dir() and p.name.startswith("patient")):
        cfg = pdir / "Info.cfg"
        if not cfg.is_file():
            problems.append(f"{cfg}: missing Info.cfg (needed for the ED/ES frame numbers)")
            continue
        info = read_info_cfg(cfg)
        frames = []
        for key in ("ED", "ES"):
            try:
                f = int(info[key])
            except (KeyError, ValueError):
                problems.append(f"{cfg}: no valid '{key}: <frame>' line")
                continue
            img = pdir / f"{pdir.name}_frame{f:02d}.nii.gz"
            gt = pdir / f"{pdir.name}_frame{f:02d}_gt.nii.gz"
            if not img.is_file():
                problems.append(f"{img}: missing {key} frame image")
            if need_labels and not gt.is_file():
                problems.append(f"{gt}: missing {key} frame label")
            frames.append((img, gt if gt.is_file() else None))
        if frames and frames[0][0] == frames[-1][0] and len(frames) == 2:
            frames = frames[:1]
        patients.append((pdir.name, frames))
    return patients, problems


def convert_acdc_official(src: Path, root: Path, *, overwrite: bool = False, dataset_id: int | None = None,
                          progress: Progress = None) -> Path:
    src = Path(src)
    if (src / "database" / "training").is_dir():
        src = src / "database"
    train_dir = src / "training"
    if not train_dir.is_dir():
        raise DataError(f"{train_dir}: missing folder (official ACDC layout: <src>/training/patientNNN/...)")
    train, problems = _official_patients(train_dir, need_labels=True)
    test, p2 = _official_patients(src / "testing", need_labels=False) if (src / "testing").is_dir() else ([], [])
    refuse(problems + p2)
    if not train:
        raise DataError(f"{train_dir}: no patientNNN folders found")
    total = sum(len(f) for _, f in train + test)
    done = 0
    with DatasetWriter(root, NAME, dataset_id or DATASET_ID, overwrite=overwrite,
                       explicit_id=dataset_id is not None) as w:
        for patients, is_test in ((train, False), (test, True)):
            for pid, frames in patients:
                for img_path, gt_path in frames:
                    img = read_sitk(img_path)
                    lab = read_sitk(gt_path) if gt_path is not None else None
                    case_id = img_path.name[: -len(".nii.gz")]
                    w.add_case(case_id, [img], lab, group=pid, test=is_test)
                    done += 1
                    report(progress, "converting ACDC", done, total)
        return w.finish({"0": "cineMRI"}, LABELS, description="ACDC cardiac cine MRI (official layout)",
                        extra={"source": str(src)})


def _read_npz(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in keys if k not in f.files]
            if missing:
                raise DataError(f"{path}: missing key(s) {missing} (has {f.files})")
            return {k: f[k] for k in keys}
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable npz ({e})") from None


def _listed(src: Path, split: str, folder: str) -> list[Path] | None:
    lst = src / "lists_ACDC" / f"{split}.txt"
    if not lst.is_file():
        return None
    names = [ln.strip() for ln in lst.read_text().splitlines() if ln.strip()]
    return [src / folder / (n if n.endswith(".npz") else n + ".npz") for n in names]


def convert_acdc_npz(src: Path, root: Path, *, overwrite: bool = False, dataset_id: int | None = None,
                     spacing: Sequence[float] = NPZ_SPACING, progress: Progress = None) -> Path:
    src = Path(src)
    slices: dict[tuple[str, str], dict[int, Path]] = defaultdict(dict)
    source_split: dict[str, str] = {}
    problems: list[str] = []
    for split in ("train", "valid"):
        files = _listed(src, split, split)
        if files is None:
            files = sorted((src / split).glob("*.npz")) if (src / split).is_dir() else []
        for f in files:
            m = SLICE_RE.match(f.name)
            if not f.is_file():
                problems.append(f"{f}: missing (listed in {src / 'lists_ACDC' / (split + '.txt')})")
            elif not m:
                problems.append(f"{f}: not named case_NNN_slice{{ED|ES}}_K.npz")
            else:
                slices[(m["case"], m["frame"])][int(m["idx"])] = f
                source_split[f"{m['case']}_{m['frame']}"] = split
    test_files = _listed(src, "test", "test")
    if test_files is None:
        test_files = sorted((src / "test").glob("*.npz")) if (src / "test").is_dir() else []
    volumes = []
    for f in test_files:
        m = VOLUME_RE.match(f.name)
        if not f.is_file():
            problems.append(f"{f}: missing (listed in {src / 'lists_ACDC' / 'test.txt'})")
        elif not m:
            problems.append(f"{f}: not named case_NNN_volume_{{ED|ES}}.npz")
        else:
            volumes.append((m["case"], m["frame"], f))
    for (case, frame), idx in slices.items():
        gaps = sorted(set(range(max(idx) + 1)) - set(idx))
        if gaps:
            problems.append(f"{src / 'train'}/{case}_slice{frame}_{gaps[0]}.npz: missing slice {gaps[0]} of "
                            f"{case} {frame}")
    refuse(problems)
    if not slices:
        raise DataError(f"{src / 'train'}: no case_NNN_slice{{ED|ES}}_K.npz files found (MT-UNet ACDC form)")
    total, done = len(slices) + len(volumes), 0
    with DatasetWriter(root, NAME, dataset_id or DATASET_ID, overwrite=overwrite,
                       explicit_id=dataset_id is not None) as w:
        for (case, frame) in sorted(slices):
            parts = [_read_npz(slices[(case, frame)][i], ("img", "label")) for i in sorted(slices[(case, frame)])]
            shapes = {p["img"].shape for p in parts} | {p["label"].shape for p in parts}
            if len(shapes) != 1:
                raise DataError(f"{slices[(case, frame)][0]}: slices of {case} {frame} differ in shape {shapes}")
            img = np.stack([p["img"] for p in parts]).astype(np.float32)
            lab = np.stack([p["label"] for p in parts]).astype(np.uint8)
            im = array_image(img, spacing)
            w.add_case(f"{case}_{frame}", [im], label_image(lab, im), group=case)
            done += 1
            report(progress, "converting ACDC (npz)", done, total)
        for case, frame, f in volumes:
            d = _read_npz(f, ("img", "label"))
            if d["img"].ndim != 3 or d["img"].shape != d["label"].shape:
                raise DataError(f"{f}: expected 3D 'img' and 'label' of equal shape, got "
                                f"{d['img'].shape} and {d['label'].shape}")
            im = array_image(d["img"].astype(np.float32), spacing)
            w.add_case(f"{case}_{frame}", [im], label_image(d["label"], im), group=case, test=True)
            source_split[f"{case}_{frame}"] = "test"
            done += 1
            report(progress, "converting ACDC (npz)", done, total)
        return w.finish({"0": "cineMRI"}, LABELS, description="ACDC cardiac cine MRI (MT-UNet npz form)",
                        extra={"source": str(src), "source_split": source_split,
                               "spacing_note": f"npz files carry no geometry; spacing set to {list(spacing)} (z,y,x)"})


def convert_acdc(src: str | Path, root: str | Path, *, overwrite: bool = False, dataset_id: int | None = None,
                 spacing: Sequence[float] | None = None, progress: Progress = None) -> Path:
    """Official layout or MT-UNet npz form (detected); returns the raw dataset folder."""
    src = Path(src)
    if not src.is_dir():
        raise DataError(f"{src}: source folder not found")
    if (src / "training").is_dir() or (src / "database" / "training").is_dir():
        return convert_acdc_official(src, Path(root), overwrite=overwrite, dataset_id=dataset_id, progress=progress)
    if (src / "lists_ACDC").is_dir() or (src / "train").is_dir():
        return convert_acdc_npz(src, Path(root), overwrite=overwrite, dataset_id=dataset_id,
                                spacing=spacing or NPZ_SPACING, progress=progress)
    raise DataError(f"{src / 'training'}: missing folder (expected the official ACDC layout <src>/training/"
                    f"patientNNN/ or MT-UNet's <src>/train/case_NNN_sliceED_K.npz)")
