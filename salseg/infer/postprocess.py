"""Postprocessing decided on cross-validation: "keep the largest connected component", for all foreground together
and per foreground class, adopted only where it does not lower the cross-validation Dice (nnU-Net's rule).

Connected components: ``scipy.ndimage.label`` with FULL connectivity on the (Z, Y, X) label grid — 26 neighbours
in 3D, 8 in 2D (a 2D image is one slice, Z = 1, so its components are the 8-connected ones in-plane). Components
are counted in voxels, never in mm: the decision does not depend on the spacing. Removed voxels become background
(label value 0, or the first label value when 0 is not one).

The decision, on the cross-validation predictions of one candidate (every validation case of every fold):

1. all foreground together: keep only the largest component of the union of the foreground classes; adopted when
   no class's mean Dice over the cases drops;
2. then per class c (on the output of step 1 when it was adopted): keep only the largest component of c; adopted
   when c's mean Dice does not drop.

``postprocessing.json`` stores what was tested, per class the Dice before and after, and what is applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from scipy import ndimage

from salseg.errors import ConfigError

FORMAT = "salseg-postprocessing/1"
CONNECTIVITY = "full: 26 neighbours in 3D, 8 in 2D (scipy.ndimage.label); voxel counts, spacing-independent"


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component (full connectivity) of a boolean mask; an empty mask stays empty. Ties go to
    the component met first in C order."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask.copy()
    labelled, n = ndimage.label(mask, structure=ndimage.generate_binary_structure(mask.ndim, mask.ndim))
    if n == 1:
        return mask.copy()
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    return labelled == int(np.argmax(sizes))


def keep_largest(seg: np.ndarray, values: Sequence[int], background: int = 0) -> np.ndarray:
    """``seg`` with every voxel of ``values`` outside the largest component of their union set to ``background``."""
    mask = np.isin(seg, list(values))
    out = seg.copy()
    out[mask & ~largest_component(mask)] = background
    return out


@dataclass
class Rules:
    """What is applied: keep-largest of all foreground together, then of each class in ``classes``."""

    label_values: list[int]
    all_foreground: bool = False
    classes: list[int] = field(default_factory=list)
    record: dict = field(default_factory=dict)   # the decision: per class the Dice before and after

    @property
    def foreground(self) -> list[int]:
        return [v for v in self.label_values if v != self.background]

    @property
    def background(self) -> int:
        return 0 if 0 in self.label_values else self.label_values[0]

    @property
    def empty(self) -> bool:
        return not self.all_foreground and not self.classes

    def apply(self, seg: np.ndarray) -> np.ndarray:
        out = np.asarray(seg)
        if self.all_foreground:
            out = keep_largest(out, self.foreground, self.background)
        for c in self.classes:
            out = keep_largest(out, [c], self.background)
        return out

    def describe(self) -> str:
        parts = (["largest component of all foreground"] if self.all_foreground else []) + \
            [f"largest component of class {c}" for c in self.classes]
        return "; ".join(parts) or "none"

    def to_json(self) -> dict:
        return {"format": FORMAT, "connectivity": CONNECTIVITY, "label_values": list(self.label_values),
                "apply": {"all_foreground": self.all_foreground, "classes": list(self.classes)}, **self.record}

    @classmethod
    def from_json(cls, data, source: str = "postprocessing.json") -> "Rules":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"{source}: not a salseg postprocessing file (expected \"format\": \"{FORMAT}\")")
        labels, apply = data.get("label_values"), data.get("apply")
        if not isinstance(labels, list) or not labels or not all(isinstance(v, int) for v in labels):
            raise ConfigError(f"{source}: field 'label_values' must be a non-empty list of integers")
        if not isinstance(apply, dict) or not isinstance(apply.get("all_foreground"), bool) \
                or not isinstance(apply.get("classes"), list):
            raise ConfigError(f"{source}: field 'apply' must hold 'all_foreground' (true/false) and 'classes' (list)")
        bad = [c for c in apply["classes"] if not isinstance(c, int) or c not in labels or c == 0]
        if bad:
            raise ConfigError(f"{source}: 'apply.classes' names {bad}, not foreground label values of {labels}")
        record = {k: v for k, v in data.items() if k not in ("format", "connectivity", "label_values", "apply")}
        return cls(list(labels), apply["all_foreground"], list(apply["classes"]), record)


def read_rules(path: str | Path) -> Rules:
    from salseg.fileio import read_json

    return Rules.from_json(read_json(path), str(path))


def write_rules(path: str | Path, rules: Rules) -> None:
    from salseg.fileio import write_json

    write_json(path, rules.to_json())


# ---------------------------------------------------------------------------------------------------- decision
def _dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice of two boolean masks; NaN when both are empty (the case does not count for that class)."""
    total = int(np.count_nonzero(pred)) + int(np.count_nonzero(ref))
    return float("nan") if total == 0 else 2.0 * int(np.count_nonzero(pred & ref)) / total


def _mean(values: list[float]) -> float | None:
    arr = np.asarray(values, dtype=float)
    return None if arr.size == 0 or np.all(np.isnan(arr)) else float(np.nanmean(arr))


def _not_lower(after: float | None, before: float | None) -> bool:
    return before is None or (after is not None and after >= before - 1e-12)


def decide(pairs: Iterable[tuple[np.ndarray, np.ndarray]], label_values: Sequence[int]) -> Rules:
    """The rules the (prediction, reference) label maps of the cross-validation support (module doc: the rule).
    Streams the cases: each case's Dice of every variant is computed once, then the decision is taken on means."""
    rules = Rules([int(v) for v in label_values])
    fg, bg = rules.foreground, rules.background
    variants: dict[str, dict[int, list[float]]] = {k: {c: [] for c in fg} for k in ("base", "all", "base_c", "all_c")}
    n = 0
    for pred, ref in pairs:
        n += 1
        pred_all = keep_largest(pred, fg, bg)
        for c in fg:
            r = ref == c
            variants["base"][c].append(_dice(pred == c, r))
            variants["all"][c].append(_dice(pred_all == c, r))
            variants["base_c"][c].append(_dice(largest_component(pred == c), r))
            variants["all_c"][c].append(_dice(largest_component(pred_all == c), r))
    if n == 0:
        raise ConfigError("no cross-validation cases to decide postprocessing on")
    means = {k: {c: _mean(v) for c, v in d.items()} for k, d in variants.items()}
    rules.all_foreground = len(fg) > 0 and all(_not_lower(means["all"][c], means["base"][c]) for c in fg)
    start, per = ("all", "all_c") if rules.all_foreground else ("base", "base_c")
    rules.classes = [c for c in fg if _not_lower(means[per][c], means[start][c])]
    rules.record = {
        "cases": n,
        "rule": "adopted when the mean cross-validation Dice does not drop (all foreground: no class drops)",
        "all_foreground": {"adopted": rules.all_foreground, "dice_before": {str(c): means["base"][c] for c in fg},
                           "dice_after": {str(c): means["all"][c] for c in fg}},
        "per_class": {str(c): {"adopted": c in rules.classes, "dice_before": means[start][c],
                               "dice_after": means[per][c]} for c in fg},
    }
    return rules


# ---------------------------------------------------------------------------------------------------- folders
def label_files(folder: Path) -> dict[str, Path]:
    """case id -> label map file in ``folder`` (image endings only; hidden and temporary files skipped)."""
    from salseg.dataset.io import ALL_ENDINGS, file_ending
    from salseg.errors import DataError
    from salseg.fileio import is_temp_name

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        end = file_ending(p)
        if p.is_file() and not p.name.startswith(".") and not is_temp_name(p) and end in ALL_ENDINGS \
                and not p.name.endswith("_uncertainty" + end):
            out[p.name[: -len(end)]] = p
    return out


def postprocess_folder(in_dir: str | Path, out_dir: str | Path, rules: Rules, *, overwrite: bool = False,
                       progress=None) -> list[Path]:
    """Apply ``rules`` to every label map in ``in_dir``, written with the same name and geometry to ``out_dir``.
    Everything is checked (files present, outputs free) before the first file is written."""
    from salseg.dataset.io import read_label, write_image
    from salseg.errors import DataError
    from salseg.infer.inputs import check_outputs
    from salseg.lock import folder_lock

    in_dir, out_dir = Path(in_dir), Path(out_dir)
    files = label_files(in_dir)
    if not files:
        raise DataError(f"{in_dir}: no label maps to postprocess")
    outputs = [out_dir / p.name for p in files.values()]
    check_outputs(out_dir, [(c, [p]) for c, p in files.items()], outputs, overwrite)
    written = []
    with folder_lock(out_dir, f"output folder {out_dir}"):
        for i, (case, path) in enumerate(files.items()):
            seg, props = read_label(path)
            write_image(rules.apply(seg).astype(seg.dtype, copy=False), props, out_dir / path.name)
            written.append(out_dir / path.name)
            if progress:
                progress("postprocessing", i + 1, len(files))
    return written
