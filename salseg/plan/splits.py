"""Cross-validation splits grouped by patient (dataset.json ``groups``), deterministic for a seed.

Like scikit-learn's GroupKFold (largest groups first, each into the fold with the fewest cases so far), but the
group order is first shuffled with the seed so that different seeds give different splits.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from salseg import results
from salseg.errors import ConfigError
from salseg.fileio import read_json
from salseg.safepath import check_name

log = logging.getLogger(__name__)

DEFAULT_FOLDS = 5


def make_splits(cases: Sequence[str], groups: Mapping[str, str] | None = None, *, n_folds: int = DEFAULT_FOLDS,
                seed: int = 0) -> list[dict]:
    """A list of ``{"train": [...], "val": [...]}``; every case in exactly one ``val``, groups never split.

    Fewer groups than ``n_folds``: one fold per group (at least 2, with a warning). A single group (e.g. a single
    case): one fold whose train and val are both all cases, with a warning.
    """
    cases = sorted(str(c) for c in cases)
    if not cases:
        return []
    groups = groups or {}
    by_group: dict[str, list[str]] = {}
    for c in cases:
        by_group.setdefault(str(groups.get(c, c)), []).append(c)
    names = sorted(by_group)
    if len(names) == 1:
        log.warning("only one group (%d case(s)): a single fold that trains and validates on the same cases; "
                    "its validation scores are not a held-out estimate", len(cases))
        return [{"train": list(cases), "val": list(cases)}]
    if len(names) < n_folds:
        log.warning("only %d groups: using %d folds instead of %d", len(names), len(names), n_folds)
        n_folds = len(names)
    rng = np.random.default_rng(seed)
    names = [names[i] for i in rng.permutation(len(names))]
    # stable sort by size (descending) keeps the shuffled order among groups of equal size
    names.sort(key=lambda g: -len(by_group[g]))
    sizes = [0] * n_folds
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    for g in names:
        f = int(np.argmin(sizes))
        folds[f].extend(by_group[g])
        sizes[f] += len(by_group[g])
    out = []
    for f in range(n_folds):
        val = sorted(folds[f])
        vs = set(val)
        out.append({"train": [c for c in cases if c not in vs], "val": val})
    return out


def validate_splits(splits: list, cases: Sequence[str], groups: Mapping[str, str] | None = None) -> list[str]:
    """Problems with ``splits`` for ``cases`` (empty list = fine): coverage, overlap, split groups."""
    problems = []
    seen: dict[str, int] = {}
    for i, fold in enumerate(splits):
        if set(fold["train"]) & set(fold["val"]) and len(splits) > 1:
            problems.append(f"fold {i}: cases both in train and val")
        for c in fold["val"]:
            if c in seen:
                problems.append(f"case {c} is in the val set of folds {seen[c]} and {i}")
            seen[c] = i
    missing = sorted(set(cases) - set(seen))
    if missing:
        problems.append(f"cases in no val fold: {', '.join(missing[:10])}")
    groups = groups or {}
    fold_of_group: dict[str, int] = {}
    for c, f in seen.items():
        g = groups.get(c, c)
        if fold_of_group.setdefault(g, f) != f:
            problems.append(f"group {g} is split over folds {fold_of_group[g]} and {f}")
    return problems


def fold_cases(root: Path, ds: str, fold: int | str) -> tuple[list[str], list[str]]:
    """(training case ids, validation case ids) of fold ``fold`` (a number or ``all``) in the dataset's splits file,
    checked where it is read: each fold lists 'train' and 'val', every case id is a safe file name and a case of the
    raw dataset (imagesTr), the chosen fold's lists are not empty and do not share a case."""
    path = results.splits_file(root, ds)
    splits = read_json(path) if path.is_file() else None
    if not isinstance(splits, list) or not splits:
        raise ConfigError(f"{path}: no splits found; run `salseg plan` for this dataset first")
    for i, s in enumerate(splits):
        if not isinstance(s, dict) or not isinstance(s.get("train"), list) or not isinstance(s.get("val"), list):
            raise ConfigError(f"{path}: fold {i} needs fields 'train' and 'val' (lists of case ids)")
        for c in s["train"] + s["val"]:  # case ids become file names
            check_name(c, str(path), f"fold {i} case id")
    check_known_cases(path, splits, raw_case_ids(root, ds))
    if fold == "all":
        cases = sorted({c for s in splits for c in s["train"] + s["val"]})
        return cases, []
    if not isinstance(fold, int) or not 0 <= fold < len(splits):
        raise ConfigError(f"fold {fold!r} does not exist: {path} has folds 0..{len(splits) - 1} (or use 'all')")
    check_fold(path, splits, fold)
    return list(splits[fold]["train"]), list(splits[fold]["val"])


def raw_case_ids(root: Path, ds: str) -> set[str] | None:
    """The training case ids of the raw dataset (None when there is no raw dataset.json to list them by)."""
    from salseg.dataset.cases import list_cases
    from salseg.dataset.dataset_json import load_dataset_json

    raw = results.raw_dir(root, ds)
    if not (raw / "dataset.json").is_file():
        return None
    return {c.case_id for c in list_cases(raw, load_dataset_json(raw), skip_bad_names=True)}


def check_known_cases(path: Path, splits: list, known: set[str] | None) -> None:
    """Every case a fold names is a case of the raw dataset; the unknown ones are named (no preprocessing can make
    them: the file or the dataset is wrong)."""
    if known is None:
        return
    for i, s in enumerate(splits):
        unknown = sorted(set(s["train"] + s["val"]) - known)
        if unknown:
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise ConfigError(f"{path}: fold {i} names case(s) {', '.join(unknown[:5])}{more} that the raw dataset "
                              f"does not have (imagesTr); fix the file or re-plan with `salseg plan` to write new "
                              f"splits")


def check_fold(path: Path, splits: list, fold: int) -> None:
    """Fold ``fold`` has training and validation cases, and none in both (except the single fold of a one-group
    dataset, whose train and val are deliberately the same cases; see :func:`make_splits`)."""
    train, val = splits[fold]["train"], splits[fold]["val"]
    for name, ids in (("train", train), ("val", val)):
        if not ids:
            raise ConfigError(f"{path}: fold {fold} has an empty '{name}' list; a fold needs training and "
                              f"validation cases")
    both = sorted(set(train) & set(val))
    if both and not (len(splits) == 1 and set(train) == set(val)):
        more = f" and {len(both) - 5} more" if len(both) > 5 else ""
        raise ConfigError(f"{path}: fold {fold} has case(s) {', '.join(both[:5])}{more} in both 'train' and 'val'; "
                          f"a validation case must not be trained on")
