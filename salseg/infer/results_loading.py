"""Loading a result folder for prediction: the folds' config.json and checkpoints, checked before any prediction."""

from __future__ import annotations

from pathlib import Path

from salseg import results
from salseg.errors import ConfigError, DataError, SalsegError

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


def full_plans(root: Path, dataset: str, cfg) -> dict:
    """plans.json with the run's own configuration (as trained) in place of the planned one; without a plans.json
    (a result folder copied alone) the parts the run config holds."""
    from salseg.fileio import read_json

    path = results.plans_file(root, dataset)
    if path.is_file():
        plans = dict(read_json(path))
        confs = dict(plans.get("configurations") or {})
        confs[cfg.config] = {**confs.get(cfg.config, {}), **cfg.plans}
        plans["configurations"] = confs
    else:
        plans = {"configurations": {cfg.config: dict(cfg.plans)}, "num_channels": cfg.in_channels}
    plans["label_values"] = list(cfg.label_values)
    plans["num_classes"] = cfg.num_classes
    conf = plans["configurations"][cfg.config]
    conf.setdefault("dim", cfg.dim)
    conf["patch_size"] = list(cfg.patch_size)
    if cfg.mode == "2.5d":
        conf.setdefault("neighbours", cfg.neighbours)
    return plans


def _fold_label_of(spec) -> str:
    parsed = parse_fold_spec(spec)
    if parsed is None:
        raise ConfigError(f"fold {spec!r}: expected a fold number, 'all', or a seed folder such as 0_seed1")
    return fold_label(*parsed)


def load_folds(cls, root, dataset: str, network: str, module: str, config: str, folds, checkpoint: str,
               device, position: str | None):
    from salseg.nets.modules.positions import check_position
    from salseg.train.checkpoint import load_checkpoint
    from salseg.train.config import RunConfig, build_model

    if checkpoint not in CHECKPOINTS:
        raise ConfigError(f"unknown checkpoint {checkpoint!r}; choose {' or '.join(CHECKPOINTS)}")
    root = results.resolve_root(root)
    ds = resolve_result_dataset(root, dataset)
    exp = results.experiment_dir(root, ds, network, module, config, position)
    have = trained_folds(exp)
    if not have:
        base = results.results_root(root, ds)
        others = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
        raise SalsegError(f"{exp}: no trained folds (result folders of {ds}: {', '.join(others) or 'none'})")
    wanted = have if folds is None or list(folds) == [] else [_fold_label_of(f) for f in folds]
    cfgs, states = [], []
    for f in wanted:  # everything is checked before the first prediction
        fdir = exp / f"fold_{f}"
        if f not in have:
            raise ConfigError(f"{fdir}: fold {f} not found (trained folds: {', '.join(have)})")
        cfg = RunConfig.load(fdir / results.CONFIG_JSON)
        ckpt_path = fdir / CHECKPOINTS[checkpoint]
        if not ckpt_path.is_file():
            present = sorted(p.name for p in fdir.glob("checkpoint_*.pt"))
            raise DataError(f"{ckpt_path}: checkpoint not found for fold {f} (present: {', '.join(present) or 'none'})")
        ckpt = load_checkpoint(ckpt_path)
        # a folder renamed or copied under another position's name: refuse, naming both positions
        check_position(cfg.position, position, fdir / results.CONFIG_JSON)
        check_position((ckpt.get("config") or {}).get("position"), position, ckpt_path)
        cfgs.append((cfg, ckpt_path))
        states.append(ckpt["model"])
    first = cfgs[0][0]
    for cfg, path in cfgs[1:]:
        for field in ("network", "module", "config", "label_values", "in_channels", "patch_size", "options", "plans",
                      "position"):
            if getattr(cfg, field) != getattr(first, field):
                raise ConfigError(f"{path.parent / results.CONFIG_JSON}: field {field!r} differs from fold "
                                  f"{wanted[0]}'s; folds of one ensemble must share the model")
    model = build_model(first)
    for (cfg, path), state in zip(cfgs, states):
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise DataError(f"{path}: weights do not fit the network of its config.json "
                            f"({str(e).splitlines()[0]})") from None
    model.load_state_dict(states[0])
    return cls(model, states, full_plans(root, ds, first), first.config, first, device=device, fold_names=wanted)
