"""The fold-folder lock of a training run (salseg.lock): taken by ``_train`` as soon as the folder is known, held
until ``train`` returns or fails. Only the main rank of a torchrun job takes it."""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator

from salseg.lock import folder_lock

_STACK: ContextVar[contextlib.ExitStack | None] = ContextVar("salseg_train_locks", default=None)


@contextlib.contextmanager
def run_locks() -> Iterator[None]:
    """Scope of the locks :func:`lock_fold` takes (released when the block ends, however it ends)."""
    with contextlib.ExitStack() as stack:
        token = _STACK.set(stack)
        try:
            yield
        finally:
            _STACK.reset(token)


def lock_fold(fold_dir: Path) -> None:
    """Lock ``fold_dir`` for this run; LockedError (exit 2, naming the holder) if another run trains it."""
    stack = _STACK.get()
    if stack is None:
        raise RuntimeError("lock_fold() outside run_locks()")
    stack.enter_context(folder_lock(fold_dir, f"fold folder {fold_dir.name} of {fold_dir.parent.name}"))
