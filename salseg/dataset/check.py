"""Integrity check of a raw dataset: every problem found, each message starting with the offending file.

Checked: dataset.json readable and valid; file names; unreadable files; missing channel files; label without
image and image without label; channel count vs dataset.json; image/label (and channel/channel) shape and
geometry (spacing, origin, direction within a tolerance); label values not declared in dataset.json;
NaN/Inf intensities; a mix of 2D and 3D cases.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from salseg.dataset.cases import CHANNEL_RE, Case, channel_file, list_cases
from salseg.dataset.dataset_json import DatasetInfo, load_dataset_json
from salseg.dataset.headers import name_problem
from salseg.dataset.io import read_image, read_label, same_geometry
from salseg.errors import DataError, SalsegError

GEOMETRY_TOL = 1e-4


def _check_case(case: Case, subset: str, info: DatasetInfo, root: Path) -> tuple[list[str], int | None]:
    """Problems of one case and its dimensionality (2, 3, or None if nothing could be read)."""
    problems: list[str] = []
    img_dir, lab_dir = root / f"images{subset}", root / f"labels{subset}"
    ending = info.file_ending
    if not case.images:
        if case.label is not None:
            problems.append(f"{case.label}: label without image (expected "
                            f"{channel_file(img_dir, case.case_id, 0, ending)})")
        return problems, None
    for c in case.missing_channels:
        name = info.channel_names.get(str(c), "?")
        problems.append(f"{channel_file(img_dir, case.case_id, c, ending)}: missing channel file "
                        f"(channel {c} '{name}' of case {case.case_id})")
    if case.label is None and subset == "Tr":
        problems.append(f"{case.images[0]}: image without label (expected {lab_dir / (case.case_id + ending)})")

    ref_props, ref_path, n_channels, ndim, n_read = None, None, 0, None, 0
    for p in case.images:
        try:  # verified (complete, no NaN/Inf, size within the limit), then read
            arr, props = read_image(p)
        except DataError as e:
            problems.append(str(e))
            continue
        except Exception as e:  # noqa: BLE001 - any reader failure is a problem of this file
            problems.append(f"{p}: unreadable image ({type(e).__name__}: {e})")
            continue
        n_channels += arr.shape[0]
        n_read += 1
        if ref_props is None:
            ref_props, ref_path, ndim = props, p, props["ndim"]
        else:
            diff = same_geometry(props, ref_props, GEOMETRY_TOL)
            if diff:
                problems.append(f"{p}: channel grid differs from {ref_path}: {diff}")
    if not case.missing_channels and n_read == len(case.images) and n_channels != info.num_channels:
        problems.append(f"{case.images[0]}: case {case.case_id} has {n_channels} channel(s) but dataset.json "
                        f"channel_names declares {info.num_channels}")
    if case.label is not None:
        try:
            lab, lprops = read_label(case.label)
        except DataError as e:
            problems.append(str(e))
            return problems, ndim
        except Exception as e:  # noqa: BLE001
            problems.append(f"{case.label}: unreadable label ({type(e).__name__}: {e})")
            return problems, ndim
        if ref_props is not None:
            diff = same_geometry(lprops, ref_props, GEOMETRY_TOL)
            if diff:
                problems.append(f"{case.label}: label grid differs from image {ref_path}: {diff}")
        values = np.unique(lab)
        undeclared = sorted(set(int(v) for v in values) - set(info.label_spec.allowed_values))
        if undeclared:
            problems.append(f"{case.label}: label values {undeclared} not declared in dataset.json labels "
                            f"(declared: {info.label_spec.allowed_values})")
        if ndim is None:
            ndim = lprops["ndim"]
    return problems, ndim


def _check_case_args(args) -> tuple[list[str], int | None]:
    return _check_case(*args)


def _stray_files(folder: Path, info: DatasetInfo, with_channel: bool) -> list[str]:
    out = []
    if not folder.is_dir():
        return out
    for p in sorted(folder.iterdir()):
        if name_problem(p):
            out.append(name_problem(p))
            continue
        if p.name.startswith(".") or p.is_dir():
            continue
        if not p.name.lower().endswith(info.file_ending.lower()):
            out.append(f"{p}: file ending differs from dataset.json file_ending '{info.file_ending}'")
        elif with_channel and not CHANNEL_RE.match(p.name[: -len(info.file_ending)]):
            out.append(f"{p}: image file name must end in a 4-digit channel suffix like _0000{info.file_ending}")
    return out


def check_dataset(raw_dir: str | Path, *, num_workers: int = 1,
                  progress: Callable[[str, int, int], None] | None = None) -> list[str]:
    """Every problem of the raw dataset at ``raw_dir``, one string each, starting with the offending path."""
    root = Path(raw_dir)
    if not root.is_dir():
        return [f"{root}: dataset folder not found"]
    try:
        info = load_dataset_json(root)
    except SalsegError as e:
        return [str(e)]
    problems: list[str] = []
    if not (root / "imagesTr").is_dir():
        problems.append(f"{root / 'imagesTr'}: folder not found")
    if not (root / "labelsTr").is_dir():
        problems.append(f"{root / 'labelsTr'}: folder not found")
    for sub, chan in (("imagesTr", True), ("labelsTr", False), ("imagesTs", True)):
        problems += _stray_files(root / sub, info, chan)

    jobs = [(c, "Tr", info, root) for c in list_cases(root, info, "Tr", skip_bad_names=True)]
    jobs += [(c, "Ts", info, root) for c in list_cases(root, info, "Ts", skip_bad_names=True)]
    n_train = sum(1 for c, sub, *_ in jobs if sub == "Tr" and c.images and c.label is not None)
    if info.num_training and n_train != info.num_training:
        problems.append(f"{root / 'dataset.json'}: numTraining is {info.num_training} but imagesTr/labelsTr "
                        f"hold {n_train} complete training cases")
    results: list[tuple[list[str], int | None]] = []
    total = len(jobs)
    if num_workers > 1 and total > 1:
        with ProcessPoolExecutor(max_workers=num_workers) as ex:
            for i, r in enumerate(ex.map(_check_case_args, jobs, chunksize=max(1, total // (4 * num_workers)))):
                results.append(r)
                if progress:
                    progress("checking cases", i + 1, total)
    else:
        for i, job in enumerate(jobs):
            results.append(_check_case(*job))
            if progress:
                progress("checking cases", i + 1, total)

    dims: dict[int, list[Path]] = {}
    for (case, *_), (probs, ndim) in zip(jobs, results):
        problems += probs
        if ndim is not None:
            first = case.images[0] if case.images else case.label
            dims.setdefault(ndim, []).append(first)
    if len(dims) > 1:
        counts = Counter({d: len(v) for d, v in dims.items()})
        majority = counts.most_common(1)[0][0]
        for d, files in sorted(dims.items()):
            if d != majority:
                problems += [f"{f}: {d}D image in a dataset whose other cases are {majority}D (mixed 2D/3D)"
                             for f in files]
    return problems


def assert_dataset_ok(raw_dir: str | Path, *, num_workers: int = 1,
                      progress: Callable[[str, int, int], None] | None = None) -> None:
    """Raise :class:`DataError` (exit code 2) listing ALL problems of the dataset, one per line."""
    problems = check_dataset(raw_dir, num_workers=num_workers, progress=progress)
    if len(problems) == 1:
        raise DataError(problems[0])  # each problem starts with the offending file: one line
    if problems:
        raise DataError(f"{Path(raw_dir)}: {len(problems)} problem(s) found:\n" + "\n".join(problems))


__all__ = ["assert_dataset_ok", "check_dataset"]
