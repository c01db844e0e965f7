"""The fold folders of an experiment: their names (``fold_0``, ``fold_all``, ``fold_0_seed1``), which are trained, and
the checkpoint files a fold may hold."""

from __future__ import annotations

from pathlib import Path

from salseg import results
from salseg.errors import ConfigError, SalsegError

CHECKPOINTS = {"final": results.CHECKPOINT_FINAL, "best": results.CHECKPOINT_BEST,
               "latest": results.CHECKPOINT_LATEST}


def resolve_result_dataset(root: Path, dataset: str) -> str:
    """A dataset name/id -> its folder name, from the raw datasets or, failing that, from the result folders."""
    from salseg.dataset.naming import DATASET_RE, resolve_dataset

    try:
        return resolve_dataset(root, dataset)
    except SalsegError as raw_error:
        base = Path(root) / "results"
        names = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
        hits = [n for n in names if n == dataset or (DATASET_RE.match(n) and (
            DATASET_RE.match(n)["name"].lower() == str(dataset).lower()
            or (str(dataset).isdigit() and int(DATASET_RE.match(n)["id"]) == int(dataset))))]
        if len(hits) == 1:
            return hits[0]
        raise raw_error


def parse_fold_spec(spec: str) -> tuple[int | str, int] | None:
    """A fold as ``-f`` names it: ``0``, ``all``, ``0_seed1`` (fold 0 trained with seed 1) or the folder name
    itself (``fold_0_seed1``) -> (fold, seed); None when it names no fold folder."""
    spec = str(spec)
    return results.parse_fold_name(spec if spec.startswith("fold_") else f"fold_{spec}")


def fold_label(fold: int | str, seed: int = 0) -> str:
    """The fold folder's name without ``fold_``: ``0``, ``all``, ``0_seed1``."""
    return results.fold_name(fold, seed)[len("fold_"):]


def fold_label_of(spec) -> str:
    """``-f``'s fold spec -> its label; a clear error when it names no fold."""
    parsed = parse_fold_spec(spec)
    if parsed is None:
        raise ConfigError(f"fold {spec!r}: expected a fold number, 'all', or a seed folder such as 0_seed1")
    return fold_label(*parsed)


def _fold_key(parsed: tuple[int | str, int]):
    fold, seed = parsed
    return (0, fold, seed) if isinstance(fold, int) else (1, 0, seed)


def trained_folds(exp_dir: Path) -> list[str]:
    """Labels (``"0"``, ``"all"``, ``"0_seed1"``) of the fold folders (every seed) that hold a config.json, in
    fold then seed order."""
    if not exp_dir.is_dir():
        return []
    found = [parsed for p in exp_dir.iterdir() if p.is_dir() and (p / results.CONFIG_JSON).is_file()
             for parsed in [results.parse_fold_name(p.name)] if parsed is not None]
    return [fold_label(*parsed) for parsed in sorted(found, key=_fold_key)]
