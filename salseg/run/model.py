"""Rebuilding a trained model: the network of a run config, and the weights of one or more fold folders (checked
before anything is predicted, with messages naming the folder or file)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from salseg import results
from salseg.errors import ConfigError, DataError, SalsegError
from salseg.plans import Configuration, Plans, read_plans
from salseg.run.checkpoint import load_checkpoint
from salseg.run.config import RunConfig
from salseg.run.folds import CHECKPOINTS, fold_label_of, resolve_result_dataset, trained_folds


def build_model(cfg: RunConfig) -> nn.Module:
    """The network of a run, freshly initialised (load ``checkpoint["model"]`` into it for trained weights).
    ``cfg.deep_supervision`` decides whether the auxiliary output layers exist (they change the weights' keys)."""
    from salseg.nets import build

    options = dict(cfg.options)
    deep_supervision = bool(options.pop("deep_supervision", cfg.deep_supervision))  # older files: an option
    return build(cfg.network, cfg.module, in_channels=cfg.in_channels, num_classes=cfg.num_classes, dim=cfg.dim,
                 plans=cfg.configuration, position=cfg.position, deep_supervision=deep_supervision, **options)


def load_fold_model(fold_dir: Path, checkpoint: str = "final") -> tuple[RunConfig, nn.Module]:
    """(the run config, the network with the weights of ``checkpoint_<checkpoint>.pt``) of one fold folder."""
    cfg = RunConfig.load(Path(fold_dir) / results.CONFIG_JSON)
    ckpt = Path(fold_dir) / CHECKPOINTS[checkpoint]
    if not ckpt.is_file():
        raise DataError(f"{ckpt}: not found; has this fold finished training?")
    model = build_model(cfg)
    model.load_state_dict(load_checkpoint(ckpt)["model"])
    return cfg, model


@dataclass
class TrainedModel:
    """One network with the weights of one or more folds (an ensemble), as :func:`load_trained` found them."""

    model: nn.Module            # built from the first fold's config, holding the first fold's weights
    state_dicts: list[dict | None]  # each fold's weights, in ``fold_names`` order (None: run as ONNX graphs)
    plans: Plans                # the dataset's plans with the run's configuration as trained
    cfg: RunConfig              # the first fold's config (every fold shares the model)
    fold_names: list[str]       # fold labels: "0", "all", "0_seed1"


def run_plans(root: Path, dataset: str, cfg: RunConfig, source: str = "config.json") -> Plans:
    """The dataset's plans (typed, validated) with the run's own configuration as trained (``cfg.configuration``) in place of
    the planned one; without a plans.json (a result folder copied alone) the parts the run config holds."""
    path = results.plans_file(root, dataset)
    return merge_run_plans(read_plans(path) if path.is_file() else None, cfg, source)


def merge_run_plans(planned: Plans | None, cfg: RunConfig, source: str = "config.json") -> Plans:
    """``planned`` (the dataset's plans, or None) with the run's configuration as trained in place of the planned
    one (see :func:`run_plans`)."""
    conf = {}
    if planned is not None and cfg.config in planned.configurations:
        conf = planned.configurations[cfg.config].to_dict()  # merged with the run's JSON record, validated below
    conf.update(cfg.configuration)
    conf.setdefault("dim", cfg.dim)
    conf["patch_size"] = list(cfg.patch_size)
    if cfg.mode == "2.5d":
        conf.setdefault("neighbours", cfg.neighbours)
    configuration = Configuration.from_dict(conf, cfg.config, cfg.in_channels, source)
    if planned is None:
        return Plans(dataset_name=cfg.dataset, num_channels=cfg.in_channels, num_classes=cfg.num_classes, labels={},
                     label_values=list(cfg.label_values), channel_names={},
                     configurations={cfg.config: configuration}, source=source)
    return replace(planned, label_values=list(cfg.label_values), num_classes=cfg.num_classes,
                   configurations={**planned.configurations, cfg.config: configuration})


def load_trained(root, dataset: str, network: str, module: str, config: str, folds, checkpoint: str,
                 position: str | None) -> TrainedModel:
    """``config.json`` and ``checkpoint_<checkpoint>.pt`` of each fold (``folds`` None or empty: every trained
    fold) of one experiment; everything is checked before the model is returned."""
    root = results.resolve_root(root)
    ds = resolve_result_dataset(root, dataset)
    exp = results.experiment_dir(root, ds, network, module, config, position)
    if not trained_folds(exp):
        base = results.results_root(root, ds)
        others = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
        raise SalsegError(f"{exp}: no trained folds (result folders of {ds}: {', '.join(others) or 'none'})")
    return load_experiment(exp, folds, checkpoint, position,
                           lambda first, source: run_plans(root, ds, first, source))


def load_experiment(exp: Path, folds, checkpoint: str, position: str | None = None, plans_of=None) -> TrainedModel:
    """The folds of one experiment folder (``<network>__<module>__<config>``, wherever it lies); ``plans_of(cfg,
    source)`` gives the plans (default: the run config's own configuration, no plans.json)."""
    from salseg.nets.modules.positions import check_position

    if checkpoint not in CHECKPOINTS:
        raise ConfigError(f"unknown checkpoint {checkpoint!r}; choose {' or '.join(CHECKPOINTS)}")
    have = trained_folds(exp)
    if not have:
        raise SalsegError(f"{exp}: no trained folds (no fold_<f>/config.json)")
    wanted = have if folds is None or list(folds) == [] else [fold_label_of(f) for f in folds]
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
    source = str(exp / f"fold_{wanted[0]}" / results.CONFIG_JSON)
    plans_of = plans_of or (lambda first, src: merge_run_plans(None, first, src))
    return assemble_ensemble(cfgs, states, wanted, lambda first: plans_of(first, source))


def assemble_ensemble(cfgs: list, states: list[dict], fold_names: list[str], plans_of) -> TrainedModel:
    """One model for the folds ``cfgs`` ((RunConfig, checkpoint path or name) pairs) with weights ``states``: the
    folds must share the model (field named otherwise) and every fold's weights must fit it; ``plans_of(cfg)`` gives
    the plans of the first fold's config. A fold's state None: its weights run elsewhere (a package's ONNX graphs),
    the network stays as built."""
    first = cfgs[0][0]
    for cfg, path in cfgs[1:]:
        for field in ("network", "module", "config", "label_values", "in_channels", "patch_size", "options", "configuration",
                      "position"):
            if getattr(cfg, field) != getattr(first, field):
                raise ConfigError(f"{Path(path).parent / results.CONFIG_JSON}: field {field!r} differs from fold "
                                  f"{fold_names[0]}'s; folds of one ensemble must share the model")
    model = build_model(first)
    for (cfg, path), state in zip(cfgs, states):
        if state is None:
            continue
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise DataError(f"{path}: weights do not fit the network of its config.json "
                            f"({str(e).splitlines()[0]})") from None
    if states[0] is not None:
        model.load_state_dict(states[0])
    return TrainedModel(model, states, plans_of(first), first, list(fold_names))
