"""Checkpoints: written atomically, loadable with ``torch.load(weights_only=True)`` (tensors, numbers, strings, lists,
dicts only; no pickled objects).

Content: ``model`` (state dict of the bare network), ``optimizer``, ``scheduler``, ``scaler`` (state dicts),
``epoch`` (completed epochs), ``best_dice`` (best mean foreground Dice so far, or None), ``rng`` (torch, numpy and
python random states as tensors), ``config`` (config.json's dict), ``salseg_version``. That is
``checkpoint_latest.pt``, the one a run continues from; a finished fold's ``checkpoint_final.pt`` and
``checkpoint_best.pt`` hold the weights only (:data:`WEIGHTS_KEYS`: no optimizer, scheduler, scaler or rng state),
and ``checkpoint_latest.pt`` is removed once the fold finished (unless ``train --keep-latest``).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from salseg.errors import DataError
from salseg.fileio import atomic_path


# what a weights-only checkpoint (checkpoint_final.pt, checkpoint_best.pt) keeps
WEIGHTS_KEYS = ("model", "epoch", "best_dice", "config", "salseg_version")


def weights_only(state: dict) -> dict:
    """``state`` without the training state (optimizer, scheduler, scaler, rng): what predict and export need."""
    return {k: v for k, v in state.items() if k in WEIGHTS_KEYS}


def rng_state() -> dict:
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": int(py_version), "internal": torch.tensor(py_internal, dtype=torch.int64),
                   "gauss_next": py_gauss},
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss_next"]))


def save_checkpoint(path: str | Path, **content: Any) -> None:
    with atomic_path(path, ".pt") as tmp:
        torch.save(content, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{path}: not a loadable salseg checkpoint ({first})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise DataError(f"{path}: not a salseg checkpoint (no 'model' weights)")
    return ckpt
