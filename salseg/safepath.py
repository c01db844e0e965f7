"""Path safety: fields read from files (config.json, plans, dataset.json, splits, checkpoints) that become parts of a
path are checked where they are read, so that a results folder or dataset from a stranger cannot make salseg write
(or read) outside the folder a path belongs to.

- a *file ending* is a plain suffix: one or more ``.<letters/digits>`` parts (``.nii.gz``, ``.png``);
- a *name* (case id, data identifier, dataset folder name, network/module name) is one path component: not empty,
  not ``.`` or ``..``, no ``/`` or ``\\``, no control characters;
- :func:`inside` is the last guard where a path is joined: the joined path must stay below its base folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from salseg.errors import ConfigError

ENDING_RE = re.compile(r"^(\.[A-Za-z0-9]+)+$")
_BAD_CHARS = re.compile(r"[/\\\x00-\x1f\x7f]")


def check_file_ending(value, source: str, field: str = "file_ending") -> str:
    """``value`` if it is a plain suffix such as ``.nii.gz``; else ConfigError naming ``source`` and ``field``."""
    if not isinstance(value, str) or not ENDING_RE.fullmatch(value):
        raise ConfigError(f"{source}: field '{field}' must be a plain file suffix like '.nii.gz' (letters and digits "
                          f"after each dot, no separators), got {value!r}")
    return value


def name_problem(value) -> str | None:
    """Why ``value`` cannot be a single path component (None if it can)."""
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if not value:
        return "must not be empty"
    if value in (".", ".."):
        return f"must not be {value!r}"
    if _BAD_CHARS.search(value):
        return "must not contain path separators ('/', '\\') or control characters"
    return None


def check_name(value, source: str, field: str) -> str:
    """``value`` if it is a safe single path component (a case id, data identifier...); else ConfigError."""
    why = name_problem(value)
    if why:
        raise ConfigError(f"{source}: field '{field}' {why} (it names a file or folder), got {value!r}")
    return value


def inside(base: str | os.PathLike, path: str | os.PathLike, what: str = "path") -> Path:
    """``path`` if it lies inside ``base`` (after resolving ``..`` and symlinks of existing parts); else ConfigError."""
    base_r = Path(os.path.realpath(base))
    path_r = Path(os.path.realpath(path))
    if path_r != base_r and base_r not in path_r.parents:
        raise ConfigError(f"{path}: {what} would leave its folder {base}; refusing to use it")
    return Path(path)


__all__ = ["check_file_ending", "check_name", "inside", "name_problem"]
