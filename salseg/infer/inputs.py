"""Input cases for prediction: collected from a folder or explicit file lists, and validated BEFORE any output is
written (readable, right dimensionality, right channel count, channels on one grid)."""

from __future__ import annotations

import re
from pathlib import Path

from salseg.dataset.cases import entries
from salseg.dataset.io import ALL_ENDINGS, NATURAL_ENDINGS, file_ending, read_sitk
from salseg.errors import DataError
from salseg.infer.export import probabilities_path, properties_path, uncertainty_path

CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})$")

Cases = list[tuple[str, list[Path]]]


def case_id_of(path: Path) -> str:
    """``<case>_0000.nii.gz`` -> ``<case>``; a file without a channel suffix gives its bare name."""
    stem = path.name[: -len(file_ending(path))] if file_ending(path) else path.stem
    m = CHANNEL_RE.match(stem)
    return m.group("case") if m else stem


def collect_cases(inputs, ending: str, in_channels: int | None = None) -> Cases:
    """(case id, channel files) pairs from a folder (files ``<case>_<CCCC><ending>``; for a one-channel model also
    ``<case><ending>``, see :func:`_from_folder`) or a list of file lists."""
    if isinstance(inputs, (str, Path)):
        return _from_folder(Path(inputs), ending, single=in_channels == 1)
    cases: Cases = []
    for group in inputs:
        files = [Path(group)] if isinstance(group, (str, Path)) else [Path(f) for f in group]
        if not files:
            raise DataError("an input case has no image files")
        cases.append((case_id_of(files[0]), files))
    _check_unique(cases)
    return cases


_DATA_FILES = (".raw", ".zraw")  # the voxel data of a MetaImage header ``<name>.mhd`` beside it


def _stem(p: Path) -> str:
    return p.name[: -len(file_ending(p))]


def _images(folder: Path, channel_files: bool) -> list[Path]:
    """The images of ``folder`` (hidden files and sub-folders aside; with ``channel_files`` only names
    ``<case>_<CCCC><ending>``); any other file is refused, listed, rather than skipped without a word."""
    if not folder.is_dir():
        raise DataError(f"{folder}: input folder not found")
    files = [p for p in entries(folder) if not p.name.startswith(".") and not p.is_dir()]
    mhd_stems = {_stem(p) for p in files if file_ending(p) == ".mhd"}
    images, skipped = [], []
    for p in sorted(files, key=lambda f: f.name):
        end = file_ending(p)
        if end in ALL_ENDINGS and (not channel_files or CHANNEL_RE.match(_stem(p))):
            images.append(p)
        elif not (end in _DATA_FILES and p.name[: -len(end)] in mhd_stems):
            skipped.append(p.name)
    if skipped:
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        named = "named <case>_0000<ending> " if channel_files else ""
        raise DataError(f"{folder}: {len(skipped)} file(s) would be skipped ({', '.join(skipped[:5])}{more}): "
                        f"inputs are {named}images with an ending in {', '.join(ALL_ENDINGS)}; move the others out")
    return images


def _from_folder(folder: Path, ending: str, single: bool = False) -> Cases:
    """Every image of ``folder`` with a supported ending (any mix of them), named ``<case>_<CCCC><ending>``. With
    ``single`` (a one-channel model) a file without that suffix is one case too: ``Case3.nii.gz`` is case
    ``Case3`` (a ``_0001`` file is still a second channel, and refused by :func:`validate_cases`)."""
    images = _images(folder, channel_files=not single)
    if not images:
        raise DataError(f"{folder}: no input images named <case>_0000{ending}"
                        + (f" or <case>{ending}" if single else "") + " (or another supported ending)")
    found: dict[str, dict[int, Path]] = {}
    bare: Cases = []
    for p in images:
        m = CHANNEL_RE.match(_stem(p))
        if m is None:
            bare.append((_stem(p), [p]))
            continue
        chans = found.setdefault(m.group("case"), {})
        ch = int(m.group("ch"))
        if ch in chans:
            raise DataError(f"{p}: channel {ch} of case {m.group('case')!r} is also given as {chans[ch].name}")
        chans[ch] = p
    cases: Cases = []
    for case, chans in sorted(found.items()):
        missing = [c for c in range(max(chans) + 1) if c not in chans]
        if missing:
            raise DataError(f"{folder / f'{case}_{missing[0]:04d}{ending}'}: channel file missing for case {case!r}")
        cases.append((case, [chans[c] for c in sorted(chans)]))
    if bare:
        cases = sorted(cases + bare)
        _check_unique(cases)
    return cases


def naming(cases: Cases) -> str:
    """How the input files were read: ``<case>_0000<ending>`` (nnU-Net's channel files), ``<case><ending>`` (one
    file per case) or, for a one-channel model, a mix of both."""
    bare = sum(1 for case, files in cases if len(files) == 1 and _stem(files[0]) == case)
    if bare == 0:
        return "<case>_0000<ending> (nnU-Net's channel files)"
    if bare == len(cases):
        return "<case><ending> (one single-channel file per case, no _0000 suffix)"
    return f"<case><ending> for {bare} case(s), <case>_0000<ending> for {len(cases) - bare}"


def output_files(out_dir: Path, cases: Cases, ending: str, probabilities: bool, uncertainty: bool) -> list[Path]:
    """The files prediction writes for ``cases`` (label maps, and ``.npz`` probabilities / uncertainty maps)."""
    out = []
    for case, _ in cases:
        label = out_dir / f"{case}{ending}"
        out.append(label)
        if probabilities:
            out.extend([probabilities_path(label), properties_path(label)])
        if uncertainty:
            out.append(uncertainty_path(label))
    return out


def raw_dataset_of(folder: Path) -> Path | None:
    """The raw dataset folder (one holding ``dataset.json``) that ``folder`` is or lies in, else None."""
    folder = folder.resolve()
    for p in (folder, *folder.parents):
        if (p / "dataset.json").is_file():
            return p
    return None


def check_outputs(out_dir: Path, cases: Cases, outputs: list[Path], overwrite: bool) -> None:
    """Refuse an output folder inside a raw dataset (always), an output that is one of the inputs (always) and
    existing files a prediction would replace (unless ``overwrite``). Nothing is written before this passes."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: output path exists and is not a folder")
    raw = raw_dataset_of(out_dir)
    if raw is not None:
        raise DataError(f"{out_dir}: output folder is inside the raw dataset {raw} (it holds dataset.json); "
                        f"predictions never go into a raw dataset: choose another -o")
    inputs = {f.resolve() for _, files in cases for f in files}
    existing = [p for p in outputs if p.exists()]
    for p in existing:
        if p.resolve() in inputs:
            raise DataError(f"{p}: the output would replace this input image; choose another -o")
    if existing and not overwrite:
        names = ", ".join(p.name for p in existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3
                                                           else "")
        raise DataError(f"{out_dir}: {len(existing)} file(s) there would be overwritten ({names}); pass "
                        f"--overwrite to replace them or choose another -o")


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

