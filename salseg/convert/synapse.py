"""Synapse multi-organ CT (BTCV) -> Dataset008_Synapse, from the raw layout or TransUNet's npz/h5 form.

Raw: ``<src>/RawData/Training/{img/img0001.nii.gz, label/label0001.nii.gz}`` (13 labels) and optionally
``<src>/RawData/Testing/img/`` (-> imagesTs). With ``protocol="8organ"`` (TransUNet) the labels are reduced to
aorta, gallbladder, left kidney, right kidney, liver, pancreas, spleen, stomach (1..8 in that order) and the 12
TransUNet test cases go to imagesTs/labelsTs.

TransUNet: ``train_npz/case0005_slice000.npz`` (keys ``image``, ``label``; slices stacked per case into a volume),
``test_vol_h5/case0001.npy.h5`` (datasets ``image``, ``label``; -> imagesTs/labelsTs), ``lists_Synapse/*.txt``.
Intensities are already clipped/scaled to [0, 1]; labels already 8-organ. No geometry is stored: spacing from
``spacing`` (z, y, x; default 3 x 0.76 x 0.76 mm). Case ids ``caseNNNN`` in both forms.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from salseg.convert.common import DatasetWriter, Progress, array_image, label_image, read_sitk, refuse, report
from salseg.errors import DataError

NAME, DATASET_ID = "Synapse", 8
LABELS_13 = {"background": 0, "spleen": 1, "right_kidney": 2, "left_kidney": 3, "gallbladder": 4, "esophagus": 5,
             "liver": 6, "stomach": 7, "aorta": 8, "inferior_vena_cava": 9, "portal_splenic_vein": 10,
             "pancreas": 11, "right_adrenal_gland": 12, "left_adrenal_gland": 13}
EIGHT_ORGANS = ["aorta", "gallbladder", "left_kidney", "right_kidney", "liver", "pancreas", "spleen", "stomach"]
LABELS_8 = {"background": 0, **{n: i + 1 for i, n in enumerate(EIGHT_ORGANS)}}
TEST_CASES_8 = ["0001", "0002", "0003", "0004", "0008", "0022", "0025", "0029", "0032", "0035", "0036", "0038"]
NPZ_SPACING = (3.0, 0.76, 0.76)
PROTOCOLS = ("13", "8organ")


def eight_organ_lut() -> np.ndarray:
    """Lookup table official label (0..13) -> TransUNet 8-organ label (others -> 0)."""
    lut = np.zeros(256, np.uint8)
    for new, organ in enumerate(EIGHT_ORGANS, start=1):
        lut[LABELS_13[organ]] = new
    return lut


def convert_synapse_raw(src: Path, root: Path, *, protocol: str = "13", overwrite: bool = False,
                        dataset_id: int | None = None, progress: Progress = None) -> Path:
    if protocol not in PROTOCOLS:
        raise DataError(f"unknown Synapse protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    base = src / "RawData" if (src / "RawData").is_dir() else src
    img_dir, lab_dir = base / "Training" / "img", base / "Training" / "label"
    refuse([f"{d}: missing folder (Synapse raw layout <src>/RawData/Training/{{img,label}}/)"
            for d in (img_dir, lab_dir) if not d.is_dir()])
    pairs, problems = [], []
    for img in sorted(img_dir.glob("img*.nii.gz")):
        num = re.fullmatch(r"img(\d+)\.nii\.gz", img.name)
        if not num:
            problems.append(f"{img}: not named imgNNNN.nii.gz")
            continue
        lab = lab_dir / f"label{num[1]}.nii.gz"
        if not lab.is_file():
            problems.append(f"{lab}: missing label for {img.name}")
        pairs.append((num[1], img, lab))
    for lab in sorted(lab_dir.glob("label*.nii.gz")):
        if not (img_dir / lab.name.replace("label", "img", 1)).is_file():
            problems.append(f"{lab}: label without image {img_dir / lab.name.replace('label', 'img', 1)}")
    refuse(problems)
    if not pairs:
        raise DataError(f"{img_dir}: no imgNNNN.nii.gz files found")
    test_imgs = sorted((base / "Testing" / "img").glob("img*.nii.gz")) if (base / "Testing" / "img").is_dir() else []
    lut = eight_organ_lut()
    total, done = len(pairs) + len(test_imgs), 0
    with DatasetWriter(root, NAME, dataset_id or DATASET_ID, overwrite=overwrite,
                       explicit_id=dataset_id is not None) as w:
        for num, img_p, lab_p in pairs:
            img, lab = read_sitk(img_p), read_sitk(lab_p)
            is_test = False
            if protocol == "8organ":
                arr = sitk.GetArrayFromImage(lab)
                if arr.min() < 0 or arr.max() > 13:
                    raise DataError(f"{lab_p}: label values outside 0..13")
                lab = label_image(lut[arr.astype(np.int64)], lab)
                is_test = num in TEST_CASES_8
            w.add_case(f"case{num}", [img], lab, test=is_test)
            done += 1
            report(progress, "converting Synapse", done, total)
        for img_p in test_imgs:
            w.add_case("test" + img_p.name[3:-len(".nii.gz")], [read_sitk(img_p)], None, test=True)
            done += 1
            report(progress, "converting Synapse", done, total)
        labels = LABELS_8 if protocol == "8organ" else LABELS_13
        return w.finish({"0": "CT"}, labels, description=f"Synapse multi-organ CT (raw, {protocol} labels)",
                        extra={"source": str(src), "protocol": protocol})


def _read_h5(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("image", "label") if k not in f]
            if missing:
                raise DataError(f"{path}: missing dataset(s) {missing} (has {list(f.keys())})")
            return np.asarray(f["image"][:]), np.asarray(f["label"][:])
    except OSError as e:
        raise DataError(f"{path}: unreadable HDF5 file ({e})") from None


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("image", "label") if k not in f.files]
            if missing:
                raise DataError(f"{path}: missing key(s) {missing} (has {f.files})")
            return f["image"], f["label"]
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable npz ({e})") from None


def _list(src: Path, names: Sequence[str], folder: str, suffix: str) -> list[Path] | None:
    for n in names:
        lst = src / "lists_Synapse" / n
        if lst.is_file():
            items = [ln.strip() for ln in lst.read_text().splitlines() if ln.strip()]
            return [src / folder / (i if i.endswith(suffix) else i + suffix) for i in items]
    return None


def convert_synapse_transunet(src: Path, root: Path, *, overwrite: bool = False, dataset_id: int | None = None,
                              spacing: Sequence[float] = NPZ_SPACING, progress: Progress = None) -> Path:
    problems = []
    train = _list(src, ["train.txt"], "train_npz", ".npz")
    if train is None:
        train = sorted((src / "train_npz").glob("*.npz")) if (src / "train_npz").is_dir() else []
    test = _list(src, ["test_vol.txt", "test.txt"], "test_vol_h5", ".npy.h5")
    if test is None:
        test = sorted((src / "test_vol_h5").glob("*.h5")) if (src / "test_vol_h5").is_dir() else []
    slices: dict[str, dict[int, Path]] = defaultdict(dict)
    for f in train:
        m = re.fullmatch(r"(case\d+)_slice(\d+)\.npz", f.name)
        if not f.is_file():
            problems.append(f"{f}: missing (listed in {src / 'lists_Synapse'})")
        elif not m:
            problems.append(f"{f}: not named caseNNNN_sliceKKK.npz")
        else:
            slices[m[1]][int(m[2])] = f
    for f in test:
        if not f.is_file():
            problems.append(f"{f}: missing (listed in {src / 'lists_Synapse'})")
        elif not re.fullmatch(r"case\d+\.npy\.h5", f.name):
            problems.append(f"{f}: not named caseNNNN.npy.h5")
    for case, idx in slices.items():
        gaps = sorted(set(range(min(idx), max(idx) + 1)) - set(idx))
        if gaps:
            problems.append(f"{src / 'train_npz' / f'{case}_slice{gaps[0]:03d}.npz'}: missing slice of {case}")
    refuse(problems)
    if not slices:
        raise DataError(f"{src / 'train_npz'}: no caseNNNN_sliceKKK.npz files found (TransUNet Synapse form)")
    total, done = len(slices) + len(test), 0
    with DatasetWriter(root, NAME, dataset_id or DATASET_ID, overwrite=overwrite,
                       explicit_id=dataset_id is not None) as w:
        for case in sorted(slices):
            parts = [_read_npz(slices[case][i]) for i in sorted(slices[case])]
            if len({p[0].shape for p in parts} | {p[1].shape for p in parts}) != 1:
                raise DataError(f"{slices[case][min(slices[case])]}: slices of {case} differ in shape")
            img = np.stack([p[0] for p in parts]).astype(np.float32)
            im = array_image(img, spacing)
            w.add_case(case, [im], label_image(np.stack([p[1] for p in parts]), im))
            done += 1
            report(progress, "converting Synapse (TransUNet)", done, total)
        for f in test:
            img, lab = _read_h5(f)
            if img.ndim != 3 or img.shape != lab.shape:
                raise DataError(f"{f}: expected 3D 'image' and 'label' of equal shape, got {img.shape}, {lab.shape}")
            im = array_image(img.astype(np.float32), spacing)
            w.add_case(f.name[: -len(".npy.h5")], [im], label_image(lab, im), test=True)
            done += 1
            report(progress, "converting Synapse (TransUNet)", done, total)
        return w.finish({"0": "CT"}, LABELS_8, description="Synapse multi-organ CT (TransUNet npz/h5, 8 organs)",
                        extra={"source": str(src), "protocol": "8organ",
                               "spacing_note": f"npz/h5 carry no geometry; spacing set to {list(spacing)} (z,y,x)"})


def convert_synapse(src: str | Path, root: str | Path, *, protocol: str = "13", overwrite: bool = False,
                    dataset_id: int | None = None, spacing: Sequence[float] | None = None,
                    progress: Progress = None) -> Path:
    """Raw (RawData/Training) or TransUNet (train_npz + test_vol_h5) form, detected from the tree."""
    src = Path(src)
    if not src.is_dir():
        raise DataError(f"{src}: source folder not found")
    if (src / "RawData").is_dir() or (src / "Training" / "img").is_dir():
        return convert_synapse_raw(src, Path(root), protocol=protocol, overwrite=overwrite, dataset_id=dataset_id,
                                   progress=progress)
    if (src / "train_npz").is_dir() or (src / "lists_Synapse").is_dir():
        return convert_synapse_transunet(src, Path(root), overwrite=overwrite, dataset_id=dataset_id,
                                         spacing=spacing or NPZ_SPACING, progress=progress)
    raise DataError(f"{src / 'RawData'}: missing folder (expected <src>/RawData/Training/img/ or TransUNet's "
                    f"<src>/train_npz/)")
