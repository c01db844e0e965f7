"""The ONE place that knows folder names: the root and everything below it.

Layout under the root (``--root``, else ``$SALSEG_ROOT``, else ``./salseg_data``)::

    raw/DatasetNNN_Name/{imagesTr,labelsTr,imagesTs,dataset.json}
    preprocessed/DatasetNNN_Name/{fingerprint.json,plans.json,splits.json,<config>/<case>.npz+.json}
    results/DatasetNNN_Name/<network>__<module>__<config>/fold_<f>/         (seed 0)
    results/DatasetNNN_Name/<network>__<module>__<config>/fold_<f>_seed<S>/  (seed S > 0)
    bench/<name>/
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT_ENV = "SALSEG_ROOT"
DEFAULT_ROOT = "salseg_data"


def resolve_root(root: str | os.PathLike | None = None) -> Path:
    """``root`` if given, else ``$SALSEG_ROOT``, else ``./salseg_data``."""
    if root is not None:
        return Path(root).expanduser().resolve()
    env = os.environ.get(ROOT_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return Path(DEFAULT_ROOT).resolve()


def raw_root(root: Path) -> Path:
    return Path(root) / "raw"


def raw_dir(root: Path, dataset: str) -> Path:
    return raw_root(root) / dataset


def preprocessed_dir(root: Path, dataset: str) -> Path:
    return Path(root) / "preprocessed" / dataset


def config_dir(root: Path, dataset: str, config: str) -> Path:
    """Preprocessed cases of one configuration."""
    return preprocessed_dir(root, dataset) / config


def fingerprint_file(root: Path, dataset: str) -> Path:
    return preprocessed_dir(root, dataset) / "fingerprint.json"


def plans_file(root: Path, dataset: str) -> Path:
    return preprocessed_dir(root, dataset) / "plans.json"


def splits_file(root: Path, dataset: str) -> Path:
    return preprocessed_dir(root, dataset) / "splits.json"


def results_root(root: Path, dataset: str) -> Path:
    return Path(root) / "results" / dataset


def experiment_name(network: str, module: str, config: str, position: str | None = None) -> str:
    """``<network>__<module>__<config>``; a non-default module position is appended as ``@<position>``."""
    module_part = module if not position or position == "head" else f"{module}@{position}"
    return f"{network}__{module_part}__{config}"


def experiment_dir(root: Path, dataset: str, network: str, module: str, config: str,
                   position: str | None = None) -> Path:
    return results_root(root, dataset) / experiment_name(network, module, config, position)


def fold_name(fold: int | str, seed: int = 0) -> str:
    """``fold_<f>`` for seed 0 (the folder every earlier run has), ``fold_<f>_seed<S>`` for seed S > 0."""
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"a seed must be >= 0, got {seed}")
    return f"fold_{fold}" if seed == 0 else f"fold_{fold}_seed{seed}"


FOLD_RE = re.compile(r"fold_(\d+|all)(?:_seed(\d+))?")


def parse_fold_name(name: str) -> tuple[int | str, int] | None:
    """Inverse of :func:`fold_name`: ``(fold, seed)``, or None when ``name`` is not a fold folder name."""
    m = FOLD_RE.fullmatch(name)
    if not m:
        return None
    fold = m.group(1) if m.group(1) == "all" else int(m.group(1))
    seed = int(m.group(2)) if m.group(2) is not None else 0
    if m.group(2) is not None and seed == 0:  # seed 0 is always the plain fold_<f> folder
        return None
    return fold, seed


def fold_dir(root: Path, dataset: str, network: str, module: str, config: str, fold: int | str,
             position: str | None = None, seed: int = 0) -> Path:
    return experiment_dir(root, dataset, network, module, config, position) / fold_name(fold, seed)


def parse_experiment_name(name: str) -> tuple[str, str, str]:
    """Inverse of :func:`experiment_name` (position stays attached to the module)."""
    parts = name.split("__")
    if len(parts) != 3:
        raise ValueError(f"not an experiment folder name <network>__<module>__<config>: {name!r}")
    return parts[0], parts[1], parts[2]


FIND_BEST_DIR = "find_best"
POSTPROCESSING_JSON = "postprocessing.json"


def find_best_dir(root: Path, dataset: str) -> Path:
    """``results/<dataset>/find_best``: where ``find-best`` writes by default (its candidates under ``candidates/``)."""
    return results_root(root, dataset) / FIND_BEST_DIR


def postprocessing_file(root: Path, dataset: str, network: str, module: str, config: str,
                        position: str | None = None) -> Path:
    """Where ``find-best`` (default output folder) writes the postprocessing rules decided for one experiment alone:
    ``results/<dataset>/find_best/candidates/<network>__<module>__<config>/postprocessing.json``."""
    return find_best_dir(root, dataset) / "candidates" / experiment_name(network, module, config, position) \
        / POSTPROCESSING_JSON


def bench_dir(root: Path, name: str) -> Path:
    return Path(root) / "bench" / name


# file names inside a fold folder
CONFIG_JSON = "config.json"
LOG_JSONL = "log.jsonl"
PROGRESS_PNG = "progress.png"
CHECKPOINT_LATEST = "checkpoint_latest.pt"
CHECKPOINT_BEST = "checkpoint_best.pt"
CHECKPOINT_FINAL = "checkpoint_final.pt"
VALIDATION_DIR = "validation"
SUMMARY_JSON = "summary.json"
