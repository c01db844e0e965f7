"""Input cases for prediction: collected from a folder or explicit file lists, and validated BEFORE any output is
written (readable, right dimensionality, right channel count, channels on one grid)."""

from __future__ import annotations

import re
from pathlib import Path

from salseg.dataset.io import ALL_ENDINGS, NATURAL_ENDINGS, file_ending, read_sitk
from salseg.errors import DataError

CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})$")

Cases = list[tuple[str, list[Path]]]


def case_id_of(path: Path) -> str:
    """``<case>_0000.nii.gz`` -> ``<case>``; a file without a channel suffix gives its bare name."""
    stem = path.name[: -len(file_ending(path))] if file_ending(path) else path.stem
    m = CHANNEL_RE.match(stem)
    return m.group("case") if m else stem


def collect_cases(inputs, ending: str) -> Cases:
    """(case id, channel files) pairs from a folder (files ``<case>_<CCCC><ending>``) or a list of file lists."""
    if isinstance(inputs, (str, Path)):
        return _from_folder(Path(inputs), ending)
    cases: Cases = []
    for group in inputs:
        files = [Path(group)] if isinstance(group, (str, Path)) else [Path(f) for f in group]
        if not files:
            raise DataError("an input case has no image files")
        cases.append((case_id_of(files[0]), files))
    _check_unique(cases)
    return cases


def _from_folder(folder: Path, ending: str) -> Cases:
    if not folder.is_dir():
        raise DataError(f"{folder}: input folder not found")
    found: dict[str, dict[int, Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.name.lower().endswith(ending.lower()):
            continue
        m = CHANNEL_RE.match(p.name[: -len(ending)])
        if m:
            found.setdefault(m.group("case"), {})[int(m.group("ch"))] = p
    if not found:
        raise DataError(f"{folder}: no input images named <case>_0000{ending} (the dataset's file ending is "
                        f"{ending!r})")
    cases: Cases = []
    for case, chans in sorted(found.items()):
        missing = [c for c in range(max(chans) + 1) if c not in chans]
        if missing:
            raise DataError(f"{folder / f'{case}_{missing[0]:04d}{ending}'}: channel file missing for case {case!r}")
        cases.append((case, [chans[c] for c in sorted(chans)]))
    return cases


def _check_unique(cases: Cases) -> None:
    seen: dict[str, Path] = {}
    for case, files in cases:
        if case in seen:
            raise DataError(f"{files[0]}: case name {case!r} used twice (also {seen[case]}); outputs would collide")
        seen[case] = files[0]


def _image_info(path: Path) -> tuple[int, int, tuple[int, ...]]:
    """(dimension, channels as salseg reads them, size) of an image; fully reads it so a corrupt body fails here."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if file_ending(path) not in ALL_ENDINGS:
        raise DataError(f"{path}: unsupported image type {file_ending(path) or path.suffix!r}")
    img = read_sitk(path)  # verifies the file is complete, then reads it
    comps = img.GetNumberOfComponentsPerPixel()
    if comps == 4 and file_ending(path) in NATURAL_ENDINGS:
        comps = 3  # RGBA -> RGB, as salseg.dataset.io reads it
    return img.GetDimension(), comps, tuple(img.GetSize())


def validate_cases(cases: Cases, in_channels: int, ndim: int | None) -> None:
    """Every file readable, of dimensionality ``ndim`` (2 or 3; None = not checked), the channels of a case on one
    grid and ``in_channels`` channels in all. Raises DataError naming the file."""
    for case, files in cases:
        total, size0 = 0, None
        for f in files:
            dim, comps, size = _image_info(f)
            if ndim is not None and dim != ndim:
                raise DataError(f"{f}: {dim}D image, but the model was trained on {ndim}D images of this dataset")
            if size0 is not None and size != size0:
                raise DataError(f"{f}: size {list(size)} differs from the case's first channel {list(size0)} "
                                f"({files[0]})")
            size0 = size0 or size
            total += comps
        if total != in_channels:
            names = ", ".join(str(f) for f in files)
            raise DataError(f"{files[0]}: case {case!r} has {total} channel(s) ({names}) but the model expects "
                            f"{in_channels} (files <case>_0000 ... _{in_channels - 1:04d})")

