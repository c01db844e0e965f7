"""Listing the cases of a raw dataset (nnU-Net v2 layout)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from salseg.dataset.dataset_json import DatasetInfo
from salseg.dataset.endings import NATURAL_ENDINGS
from salseg.dataset.headers import name_problem, require_utf8_name

CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})$")


@dataclass
class Case:
    case_id: str
    images: list[Path]          # one file per channel, channel order; a missing channel is absent from the list
    label: Path | None
    missing_channels: list[int]


def _strip(name: str, ending: str) -> str | None:
    return name[: -len(ending)] if name.lower().endswith(ending.lower()) else None


def entries(folder: Path, skip_bad_names: bool = False) -> list[Path]:
    """The sorted entries of ``folder``; a name that is not valid UTF-8 raises DataError naming it (escaped), or is
    left out with ``skip_bad_names`` (for ``check``, which reports it on its own)."""
    out = []
    for p in sorted(folder.iterdir()):
        if name_problem(p):
            if skip_bad_names:
                continue
            require_utf8_name(p)
        out.append(p)
    return out


def list_image_cases(folder: Path, info: DatasetInfo, skip_bad_names: bool = False) -> dict[str, dict[int, Path]]:
    """case id -> {channel index: path} for files ``<case>_<CCCC><file_ending>`` in ``folder``."""
    out: dict[str, dict[int, Path]] = {}
    if not folder.is_dir():
        return out
    for p in entries(folder, skip_bad_names):
        stem = _strip(p.name, info.file_ending)
        if stem is None or p.name.startswith("."):
            continue
        m = CHANNEL_RE.match(stem)
        if not m:
            continue
        out.setdefault(m.group("case"), {})[int(m.group("ch"))] = p
    return out


def list_cases(raw_dataset_dir: str | Path, info: DatasetInfo, subset: str = "Tr",
               skip_bad_names: bool = False) -> list[Case]:
    """Cases of ``imagesTr`` (with ``labelsTr``) or ``imagesTs`` (labels if a ``labelsTs`` exists), sorted.
    A file name that is not valid UTF-8 raises DataError (see :func:`entries`)."""
    root = Path(raw_dataset_dir)
    images = list_image_cases(root / f"images{subset}", info, skip_bad_names)
    label_dir = root / f"labels{subset}"
    labels = {}
    if label_dir.is_dir():
        for p in entries(label_dir, skip_bad_names):
            stem = _strip(p.name, info.file_ending)
            if stem is not None and not p.name.startswith("."):
                labels[stem] = p
    ids = sorted(set(images) | (set(labels) if subset == "Tr" else set()))
    cases = []
    for cid in ids:
        chans = images.get(cid, {})
        if info.file_ending.lower() in NATURAL_ENDINGS:
            # one PNG/JPG/BMP/TIF file may hold several channels (RGB = channels 0, 1, 2 in one ``_0000`` file,
            # nnU-Net v2's convention); only gaps in the file numbering are missing files here
            expected = range(max(chans) + 1) if chans else [0]
        else:
            expected = range(info.num_channels)
        missing = [c for c in expected if c not in chans]
        cases.append(Case(cid, [chans[c] for c in sorted(chans)], labels.get(cid), missing))
    return cases


def channel_file(folder: Path, case_id: str, channel: int, ending: str) -> Path:
    return Path(folder) / f"{case_id}_{channel:04d}{ending}"
