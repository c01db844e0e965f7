"""Dataset names: ``DatasetNNN_Name`` folders, named on the CLI by name, full name or id."""

from __future__ import annotations

import re
from pathlib import Path

from salseg.errors import SalsegError
from salseg.results import raw_root

DATASET_RE = re.compile(r"^Dataset(?P<id>\d{3})_(?P<name>.+)$")


def dataset_folder_name(dataset_id: int, name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]*", name):
        raise SalsegError(f"invalid dataset name {name!r}: use letters, digits, '_' or '-'")
    if not 0 <= dataset_id <= 999:
        raise SalsegError(f"dataset id {dataset_id} must be between 0 and 999")
    return f"Dataset{dataset_id:03d}_{name}"


def list_datasets(root: Path) -> list[str]:
    base = raw_root(root)
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and DATASET_RE.match(p.name))


def resolve_dataset(root: Path, name: str | int) -> str:
    """``ACDC``, ``Dataset027_ACDC`` or ``27`` -> ``Dataset027_ACDC``; unknown/ambiguous names list what exists."""
    name = str(name).strip()
    existing = list_datasets(root)
    matches: list[str] = []
    if name in existing:
        return name
    if name.isdigit():
        matches = [d for d in existing if int(DATASET_RE.match(d)["id"]) == int(name)]
    else:
        matches = [d for d in existing if DATASET_RE.match(d)["name"] == name]
        if not matches:
            matches = [d for d in existing if DATASET_RE.match(d)["name"].lower() == name.lower()]
    if len(matches) == 1:
        return matches[0]
    have = ", ".join(existing) if existing else "none"
    where = raw_root(root)
    if not matches:
        raise SalsegError(f"unknown dataset {name!r} in {where} (datasets there: {have})")
    raise SalsegError(f"ambiguous dataset {name!r}: matches {', '.join(matches)}; use the full name")


def next_free_id(root: Path, preferred: int | None = None) -> int:
    """``preferred`` if no dataset uses it, else the lowest unused id >= 500."""
    used = {int(DATASET_RE.match(d)["id"]) for d in list_datasets(root)}
    if preferred is not None and preferred not in used:
        return preferred
    i = 500
    while i in used:
        i += 1
    return i
