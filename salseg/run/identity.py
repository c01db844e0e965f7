"""Which run a fold folder holds, and replacing a finished run only when its successor has finished.

Every run has a ``run_id`` (config.json, the checkpoints' config, validation/summary.json), so the files of a fold
folder can be checked to belong to one run: :func:`finished_run` is true only when config.json,
checkpoint_final.pt and the final validation agree. A run that may not touch a finished run (``train --overwrite``)
trains in :func:`staging_dir`, a hidden sibling, and :func:`replace_run` swaps it in at the very end; an interrupted
or failed run leaves the finished one as it was.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path

import torch

from salseg import results as R
from salseg.fileio import read_json

log = logging.getLogger(__name__)


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def staging_dir(fold_dir: Path) -> Path:
    """The hidden sibling an ``--overwrite`` run trains in (``.fold_0.overwrite``; never listed as a fold)."""
    fold_dir = Path(fold_dir)
    return fold_dir.with_name(f".{fold_dir.name}.overwrite")


def has_final(fold_dir: Path) -> bool:
    """The folder holds a run that reached its end (checkpoint_final.pt): it is not trained over silently."""
    return (Path(fold_dir) / R.CHECKPOINT_FINAL).is_file()


def _json(path: Path):
    try:
        return read_json(path) if path.is_file() else None
    except Exception:  # torn or garbage: the files do not agree
        return None


def checkpoint_config(path: Path) -> dict | None:
    """The run config a checkpoint holds (memory-mapped: the weights are not read); None if it has none."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable, torn or not a checkpoint
        return None
    config = ckpt.get("config") if isinstance(ckpt, dict) and "model" in ckpt else None
    return config if isinstance(config, dict) else None


def finished_run(fold_dir: Path) -> bool:
    """Whether ``fold_dir`` holds ONE finished run: checkpoint_final.pt, config.json and validation/summary.json
    (when the run has validation cases) name the same run id. A folder written before run ids existed counts when
    its config.json equals the final checkpoint's config and the validation is there."""
    fold_dir = Path(fold_dir)
    config = _json(fold_dir / R.CONFIG_JSON)
    if not isinstance(config, dict) or not has_final(fold_dir):
        return False
    final = checkpoint_config(fold_dir / R.CHECKPOINT_FINAL)
    if final is None:
        return False
    summary = _json(fold_dir / R.VALIDATION_DIR / R.SUMMARY_JSON)
    needs_validation = str(config.get("fold")) != "all" or summary is not None
    run_id = config.get("run_id") or ""
    if not run_id:  # legacy folder: the whole config must be the final checkpoint's
        return json.loads(json.dumps(final)) == config and (summary is not None or not needs_validation)
    if final.get("run_id") != run_id:
        return False
    return not needs_validation or (isinstance(summary, dict) and summary.get("run_id") == run_id)


def replace_run(staging: Path, fold_dir: Path) -> None:
    """Put the finished run in ``staging`` at ``fold_dir``: the old folder is moved aside, the new one renamed in
    (each a rename on one file system), then the old one removed."""
    staging, fold_dir = Path(staging), Path(fold_dir)
    aside = fold_dir.with_name(f".{fold_dir.name}.replaced.{os.getpid()}")
    if fold_dir.exists():
        os.replace(fold_dir, aside)
    try:
        os.replace(staging, fold_dir)
    except BaseException:
        if aside.exists() and not fold_dir.exists():
            os.replace(aside, fold_dir)  # put the old run back
        raise
    shutil.rmtree(aside, ignore_errors=True)
    log.info("%s: the finished run replaced the previous one", fold_dir)


def discard(staging: Path) -> None:
    """Remove an unfinished ``--overwrite`` run's folder (the finished run it was to replace stays)."""
    shutil.rmtree(staging, ignore_errors=True)
