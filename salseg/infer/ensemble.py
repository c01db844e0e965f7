"""Ensembles of saved probabilities: the ``<case>.npz`` (``probabilities`` (K, Z, Y, X) float32 on the image grid,
``label_values``) + ``<case>.json`` (the geometry, ``original``) that ``predict --save-probabilities`` and
``train/validate --save-probabilities`` write, averaged case by case over several folders (models).

Everything is checked before anything is written: every folder holds the same cases (missing ones are named), the
same label values (and regions), and each case has one geometry in every folder. The mean is unweighted; the label
map is its argmax mapped to label values (sigmoid region probabilities: each region > 0.5, painted in
``regions_class_order``), optionally postprocessed (salseg.infer.postprocess).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from salseg.errors import DataError
from salseg.fileio import is_temp_name, read_json, read_npz, write_json, write_npz
from salseg.infer.export import label_dtype, labels_from_probabilities, properties_path

Progress = Callable[[str, int, int], None]


def probability_files(folder: str | Path) -> dict[str, Path]:
    """case id -> ``<case>.npz`` in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    found = {p.name[:-4]: p for p in sorted(folder.glob("*.npz"))
             if p.is_file() and not p.name.startswith(".") and not is_temp_name(p)}
    if not found:
        raise DataError(f"{folder}: no <case>.npz probabilities (write them with --save-probabilities)")
    return found


def _npz_shape(path: Path, key: str) -> tuple[int, ...]:
    """The shape of one array in an .npz, reading only its header."""
    try:
        with zipfile.ZipFile(path) as z, z.open(f"{key}.npy") as f:
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            shape, _, _ = read[np.lib.format.read_magic(f)](f)
            return shape
    except KeyError:
        raise DataError(f"{path}: no {key!r} array in it (not a salseg probability file)") from None
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from None


@dataclass
class Member:
    """What a folder's probability file of one case says about itself (read before any averaging)."""

    path: Path
    label_values: list[int]
    regions: list[int] | None
    original: dict
    file_ending: str


def read_member(npz: Path) -> Member:
    props_file = npz.with_name(npz.name[:-4] + ".json")
    if not props_file.is_file():
        raise DataError(f"{props_file}: missing (the geometry of {npz.name}; written with --save-probabilities)")
    props = read_json(props_file)
    original = props.get("original") if isinstance(props, dict) else None
    if not isinstance(original, dict) or not all(k in original for k in ("shape", "spacing", "origin", "direction")):
        raise DataError(f"{props_file}: no 'original' geometry (shape, spacing, origin, direction)")
    small = read_small(npz)
    labels = [int(v) for v in small["label_values"]]
    regions = [int(v) for v in small["regions_class_order"]] if "regions_class_order" in small else None
    shape = list(_npz_shape(npz, "probabilities"))
    want = [len(regions) if regions else len(labels), *[int(s) for s in original["shape"]]]
    if shape != want:
        raise DataError(f"{npz}: probabilities of shape {shape}, expected {want} (channels, the image's shape)")
    return Member(npz, labels, regions, original, str(props.get("file_ending") or ".nii.gz"))


def read_small(npz: Path) -> dict[str, np.ndarray]:
    """The small arrays of a probability file (everything but ``probabilities``)."""
    try:
        with np.load(npz, allow_pickle=False) as f:
            return {k: f[k] for k in f.files if k != "probabilities"}
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise DataError(f"{npz}: not a readable .npz file ({e})") from None


def check_ensemble(folders: Sequence[str | Path]) -> tuple[list[str], list[list[Member]]]:
    """(cases, per case the member of each folder), after checking cases, labels and geometry agree."""
    from salseg.dataset.io import same_geometry

    folders = [Path(f) for f in folders]
    if len(folders) < 2:
        raise DataError("an ensemble needs two or more folders of probabilities (-i DIR DIR ...)")
    dupes = sorted({str(f) for f in folders if sum(g.resolve() == f.resolve() for g in folders) > 1})
    if dupes:
        raise DataError(f"{dupes[0]}: given twice; an ensemble averages different models")
    files = [probability_files(f) for f in folders]
    every = sorted(set().union(*files))
    for folder, have in zip(folders, files):
        missing = [c for c in every if c not in have]
        if missing:
            other = next(f for f, h in zip(folders, files) if missing[0] in h)
            names = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise DataError(f"{folder}: probabilities missing for {len(missing)} case(s): {names} (present in "
                            f"{other})")
    members = []
    for case in every:
        row = [read_member(have[case]) for have in files]
        first = row[0]
        for folder, m in zip(folders[1:], row[1:]):
            if m.label_values != first.label_values or m.regions != first.regions:
                what = "regions" if m.regions != first.regions else "label values"
                mine, theirs = (m.regions, first.regions) if what == "regions" else (m.label_values,
                                                                                    first.label_values)
                raise DataError(f"{m.path}: {what} {mine} differ from {first.path}'s {theirs}; an ensemble needs "
                                f"models of the same labels")
            diff = same_geometry(first.original, m.original)
            if diff:
                raise DataError(f"case {case}: geometry differs between {folders[0]} and {folder} ({diff})")
        members.append(row)
    return every, members


def mean_probabilities(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """The unweighted mean (float32) of probability arrays of one shape."""
    total = np.zeros_like(np.asarray(arrays[0], dtype=np.float32))
    for a in arrays:
        total += np.asarray(a, dtype=np.float32)
    return total / len(arrays)


def labels_of(probabilities: np.ndarray, label_values: Sequence[int], regions: Sequence[int] | None) -> np.ndarray:
    """Label map of (averaged) probabilities: argmax -> label values, or thresholded regions painted in order."""
    if not regions:
        return labels_from_probabilities(probabilities, label_values)
    out = np.zeros(probabilities.shape[1:], dtype=label_dtype(label_values))
    for value, p in zip(regions, probabilities):
        out[p > 0.5] = value
    return out


def ensemble_folders(folders: Sequence[str | Path], out_dir: str | Path, *, save_probabilities: bool = False,
                     rules=None, overwrite: bool = False, progress: Progress | None = None) -> list[Path]:
    """Average the probabilities of ``folders`` case by case into label maps ``out_dir/<case><ending>`` (+
    ``<case>.npz``/``.json`` with ``save_probabilities``); ``rules`` (salseg.infer.postprocess.Rules) postprocess
    the label maps. Returns the label files."""
    from salseg.dataset.io import write_image
    from salseg.infer.inputs import check_outputs, output_files
    from salseg.lock import folder_lock

    cases, members = check_ensemble(folders)
    if rules is not None and sorted(rules.label_values) != sorted(members[0][0].label_values):
        raise DataError(f"postprocessing rules for labels {rules.label_values}, but the probabilities have "
                        f"{members[0][0].label_values}")
    out_dir = Path(out_dir)
    ending = members[0][0].file_ending
    pairs = [(c, [m.path for m in row]) for c, row in zip(cases, members)]
    check_outputs(out_dir, pairs, output_files(out_dir, pairs, ending, save_probabilities, False), overwrite)
    written = []
    with folder_lock(out_dir, f"ensemble folder {out_dir}"):
        for i, (case, row) in enumerate(zip(cases, members)):
            first = row[0]
            probs = mean_probabilities([read_npz(m.path)["probabilities"] for m in row])
            seg = labels_of(probs, first.label_values, first.regions)
            if rules is not None:
                seg = rules.apply(seg)
            out = out_dir / f"{case}{ending}"
            if save_probabilities:
                extra = {"regions_class_order": np.asarray(first.regions, np.int64)} if first.regions else {}
                write_npz(out_dir / f"{case}.npz", probabilities=probs,
                          label_values=np.asarray(first.label_values, np.int64), **extra)
                write_json(properties_path(out), {"case_id": case, "original": first.original,
                                                  "label_values": first.label_values, "file_ending": ending,
                                                  "ensemble_of": [str(m.path.parent) for m in row]})
            write_image(seg, first.original, out)
            written.append(out)
            if progress:
                progress("ensembling cases", i + 1, len(cases))
    return written
