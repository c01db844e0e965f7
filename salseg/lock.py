"""One writer per folder: a lock file ``<folder>/.salseg.lock`` holding the writer's pid, host, command and start.

Taken atomically (the file is written under a temporary name, then hard-linked to the lock name, which fails if a
lock exists), released on exit. A lock whose process is gone (same host, pid not running or a different process
under that pid) is taken over; a live holder, or one on another host (whose pid cannot be checked), makes a second
run fail with exit 2 naming the holder and the lock file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from salseg.errors import SalsegError

LOCK_NAME = ".salseg.lock"
log = logging.getLogger(__name__)


class LockedError(SalsegError):
    """Another salseg process writes to this folder."""

    exit_code = 2


def _start_ticks(pid: int) -> int | None:
    """The process start time (clock ticks since boot) on Linux; None elsewhere. Tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int, start: int | None) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    if start is not None:
        now = _start_ticks(pid)
        if now is not None and now != start:
            return False  # the pid was reused by another process
    return True


def _describe(info: dict) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("time", 0)))
    cmd = info.get("command") or "?"
    return f"pid {info.get('pid')} on {info.get('host')} since {when} ({cmd})"


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "this folder") -> Iterator[Path]:
    """Hold the lock of ``folder`` (created if needed) for the ``with`` block; LockedError if another run holds it."""
    folder = Path(folder)
    created = [p for p in [folder, *folder.parents] if not p.exists()]  # removed again if still empty at the end
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(), "start": _start_ticks(os.getpid()),
          "time": time.time(), "command": " ".join(os.path.basename(a) if i == 0 else a
                                                   for i, a in enumerate(sys.argv))[:300]}
    tmp = folder / f".salseg.lock.{me['pid']}.{time.monotonic_ns()}"
    tmp.write_text(json.dumps(me))
    try:
        for _ in range(5):
            try:
                os.link(tmp, path)
                break
            except FileExistsError:
                holder = _read(path)
                if holder is None:
                    continue  # released meanwhile
                if holder.get("host") == me["host"] and isinstance(holder.get("pid"), int) and not _alive(
                        holder["pid"], holder.get("start")):
                    if _take_over(path, holder):
                        log.warning("%s: took over the lock of %s from a run that is gone (%s)", path, what,
                                    _describe(holder))
                    continue
                if not holder:  # unreadable: being written, or garbage; give it a moment
                    time.sleep(0.2)
                    if _read(path) == {} and _take_over(path, {}):
                        log.warning("%s: took over the unreadable lock of %s", path, what)
                    continue
                raise LockedError(f"{path}: {what} is in use by another salseg run ({_describe(holder)}); wait "
                                  f"for it to finish, or delete the lock file if that process is gone")
        else:
            raise LockedError(f"{path}: could not take the lock of {what} (it keeps changing hands)")
    finally:
        tmp.unlink(missing_ok=True)
    try:
        yield path
    finally:
        if (_read(path) or {}).get("pid") == me["pid"]:
            path.unlink(missing_ok=True)
        for p in created:  # a run that failed before writing anything leaves no empty folders behind
            try:
                p.rmdir()
            except OSError:
                break


def _take_over(path: Path, stale: dict) -> bool:
    """Remove a stale lock, unless someone replaced it in the meantime (then it is theirs); True if removed."""
    aside = path.with_name(f"{LOCK_NAME}.stale.{os.getpid()}.{time.monotonic_ns()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    removed = True
    if _read(aside) not in (stale, None):  # a fresh lock got renamed: put it back if the name is still free
        removed = False
        with contextlib.suppress(FileExistsError, FileNotFoundError):
            os.link(aside, path)
    aside.unlink(missing_ok=True)
    return removed


__all__ = ["LOCK_NAME", "LockedError", "folder_lock"]
