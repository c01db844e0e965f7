"""Postprocessing rules, the part of a trained model's contract that travels with it (``postprocessing.json``,
format ``salseg-postprocessing/1``): "keep the largest connected component", for all foreground together and per
foreground class. ``salseg.infer.postprocess`` decides them on cross-validation (``find-best``) and applies them to
folders; a model package (salseg.run.package) carries them.

Connected components: ``scipy.ndimage.label`` with FULL connectivity on the (Z, Y, X) label grid — 26 neighbours
in 3D, 8 in 2D (a 2D image is one slice, Z = 1, so its components are the 8-connected ones in-plane). Components
are counted in voxels, never in mm. Removed voxels become background (label value 0, or the first label value when
0 is not one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from salseg.errors import ConfigError

FORMAT = "salseg-postprocessing/1"
CONNECTIVITY = "full: 26 neighbours in 3D, 8 in 2D (scipy.ndimage.label); voxel counts, spacing-independent"


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component (full connectivity) of a boolean mask; an empty mask stays empty. Ties go to
    the component met first in C order."""
    from scipy import ndimage  # 0.8 s of imports: only where rules are applied, not for every `salseg predict`

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


def check_rules_labels(rules: Rules, label_values: Sequence[int], rules_source: str, model: str) -> None:
    """Refuse rules decided for other label values than the model predicts, naming both."""
    if sorted(int(v) for v in rules.label_values) != sorted(int(v) for v in label_values):
        raise ConfigError(f"{rules_source}: postprocessing rules for label values {list(rules.label_values)}, but "
                          f"{model} predicts {[int(v) for v in label_values]}; refused")
