"""Atomic writes: write to a temporary name in the same folder, then rename. No pickle anywhere."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


RESOURCE_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                   errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
                   errno.EROFS: "read-only file system", errno.EFBIG: "file too large for the file system"}
FULL_BELOW = 64 * 1024  # a write that failed with less free space than this ran out of space
TEMP_GLOB = ".*.part*"  # the temporary names of :func:`atomic_path`


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def is_temp_name(path: str | os.PathLike) -> bool:
    """Is ``path`` a hidden temporary name salseg makes: :func:`atomic_path`'s ``.<name>.<random>.part<suffix>`` or
    a lock being taken (``.salseg.lock.<pid>.<ns>``, :mod:`salseg.lock`)?"""
    name = Path(os.fsdecode(path)).name
    return name.startswith(".") and (".part" in name or name.startswith(".salseg.lock."))


def resource_error(exc: BaseException, path: str | os.PathLike) -> Exception | None:
    """A one-line ResourceError naming ``path`` for an OSError with a resource errno (ENOSPC, EACCES, EROFS...)."""
    from salseg.errors import ResourceError

    if isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS:
        where = path  # the user's path; a folder that could not be made is named itself, a temporary name never
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and exc.filename:
            where = exc.filename
        if is_temp_name(where):
            where = path if not is_temp_name(path) else Path(os.fsdecode(where)).parent
        return ResourceError(f"{where}: {RESOURCE_ERRNOS[exc.errno]} (nothing written)")
    return None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on error delete it.

    ``suffix`` keeps the extension that writers such as SimpleITK or numpy look at (default: the
    file's own full suffix, e.g. ``.nii.gz``). A full disk, a permission problem or a read-only file system
    becomes a ResourceError (exit 2) naming the path; nothing is left behind.
    """
    path = Path(path)
    if suffix is None:
        suffix = "".join(path.suffixes) or ".tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + suffix, dir=path.parent)
    except OSError as e:
        raise (resource_error(e, path) or e) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp creates 0600; give the file the usual permissions (umask applies)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException as e:
        # writers that do not say why (torch, SimpleITK) failed on a full disk: measure while the temp file exists
        free = _free_bytes(path.parent) if isinstance(e, Exception) else None
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        mapped = resource_error(e, path)
        if mapped is None and free is not None and free < FULL_BELOW:
            from salseg.errors import ResourceError

            mapped = ResourceError(f"{path}: no space left on the device (nothing written; the writer said: "
                                   f"{str(e).strip().splitlines()[-1][:120] if str(e).strip() else type(e).__name__})")
        if mapped is not None:
            raise mapped from None
        raise


def clean_temp_files(folder: str | os.PathLike) -> int:
    """Delete the temporary files (:data:`TEMP_GLOB`) a killed run left in ``folder``; the caller holds the folder's
    lock (:mod:`salseg.lock`), so no live writer owns them. Returns how many were removed."""
    n = 0
    for p in Path(folder).glob(TEMP_GLOB):
        if p.is_file():
            p.unlink(missing_ok=True)
            n += 1
    return n


def _json_default(obj: Any):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: str | os.PathLike, data: Any, indent: int | None = 2) -> None:
    with atomic_path(path, ".json") as tmp:
        tmp.write_text(json.dumps(data, indent=indent, default=_json_default, allow_nan=True) + "\n")


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def read_json(path: str | os.PathLike) -> Any:
    """Read JSON (strict UTF-8, no duplicate keys); any problem raises ConfigError naming the file."""
    from salseg.errors import ConfigError

    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a JSON file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror or e})") from None
    return parse_json(data, str(path))


def parse_json(data: bytes, source: str) -> Any:
    """JSON bytes (strict UTF-8, no duplicate keys) -> the value; any problem raises ConfigError naming ``source``."""
    from salseg.errors import ConfigError

    try:
        return json.loads(data.decode("utf-8-sig"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError as e:
        raise ConfigError(f"{source}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    except _DuplicateKey as e:
        raise ConfigError(f"{source}: key {e.args[0]!r} appears twice in one object") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{source}: not valid JSON ({e})") from None
    except RecursionError:
        raise ConfigError(f"{source}: JSON nested too deeply") from None


def write_npz(path: str | os.PathLike, compress: bool = True, **arrays: np.ndarray) -> None:
    with atomic_path(path, ".npz") as tmp:
        (np.savez_compressed if compress else np.savez)(tmp, **arrays)


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON record as a line (flushed and fsynced: a killed run keeps every full line)."""
    try:
        with open(path, "a") as f:
            f.write(json.dumps(record, default=_json_default) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise (resource_error(e, path) or e) from None
