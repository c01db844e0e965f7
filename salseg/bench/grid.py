"""Benchmark grids: network x module x fold combinations, trained locally (in-process, one after the other) or as Ray
tasks (one GPU each when CUDA is present, else one CPU), then collected into ``bench/<name>/``.

- invalid network + module pairs (``salseg.nets.invalid_reason``) are reported and skipped;
- a combination whose fold folder already holds ``checkpoint_final.pt`` and ``validation/summary.json`` is finished
  and skipped, so an interrupted grid resumes where it stopped;
- a combination that fails is reported with its message; the others still run and are collected.

Ray is imported only for ``executor="ray"`` (extra ``ray``). With ``address`` the grid joins that cluster
(``ray.init(address=...)``; salseg must be installed on every node and the data root visible at the same path);
without, a local Ray is started and shut down afterwards. A Ray session that is already initialised is reused.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from salseg import results as R
from salseg.errors import ConfigError, SalsegError

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]
EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Combination:
    network: str
    module: str
    config: str
    fold: int | str
    position: str | None = None

    @property
    def label(self) -> str:
        return f"{R.experiment_name(self.network, self.module, self.config, self.position)}/{R.fold_name(self.fold)}"

    def fold_dir(self, root: Path, dataset: str) -> Path:
        return R.fold_dir(root, dataset, self.network, self.module, self.config, self.fold, self.position)

    def experiment_dir(self, root: Path, dataset: str) -> Path:
        return R.experiment_dir(root, dataset, self.network, self.module, self.config, self.position)


@dataclass
class GridResult:
    dataset: str
    combinations: list[Combination]                              # every valid combination (trained or not)
    invalid: list[dict] = field(default_factory=list)             # {network, module, reason}
    skipped: list[Combination] = field(default_factory=list)      # already finished before this run
    trained: list[Combination] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)              # {combination, error}
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "combinations": [c.label for c in self.combinations],
                "invalid": self.invalid, "skipped": [c.label for c in self.skipped],
                "trained": [c.label for c in self.trained],
                "failed": [{"combination": f["combination"].label, "error": f["error"]} for f in self.failed],
                "seconds": self.seconds}


def _unique(items: Sequence, what: str) -> list:
    items = list(items)
    if not items:
        raise ConfigError(f"give at least one {what}")
    return list(dict.fromkeys(items))


def plan_grid(networks: Sequence[str], modules: Sequence[str], folds: Sequence[int | str], config: str,
              positions: Sequence[str | None] = (None,)) -> tuple[list[Combination], list[dict]]:
    """(valid combinations in network, module, position, fold order; invalid pairs with their reason)."""
    from salseg.nets import registry
    from salseg.train.config import CONFIG_DIMS

    if config not in CONFIG_DIMS:
        raise ConfigError(f"unknown configuration {config!r}; choose one of {', '.join(CONFIG_DIMS)}")
    dim = CONFIG_DIMS[config]
    networks, modules = _unique(networks, "network"), _unique(modules, "module")
    folds, positions = _unique(folds, "fold"), _unique(positions, "module position")
    for n in networks:
        registry.get_network(n)  # unknown names fail before any work, with the list of known ones
    for m in modules:
        registry.get_module(m)
    from salseg.nets.modules.positions import check_position_name

    for p in positions:
        if p is not None:
            check_position_name(p)
    positions = list(dict.fromkeys(None if p == "head" else p for p in positions))  # head: the plain folder name
    combos, invalid = [], []
    for n in networks:
        for m in modules:
            reason = registry.invalid_reason(n, m, dim)
            if reason:
                invalid.append({"network": n, "module": m, "reason": reason})
                continue
            for p in positions if registry.get_module(m).kind == "slice" else (None,):  # positions: slice modules
                combos.extend(Combination(n, m, config, f, p) for f in folds)
    return combos, invalid


def is_finished(fold_dir: Path) -> bool:
    return (fold_dir / R.CHECKPOINT_FINAL).is_file() and (fold_dir / R.VALIDATION_DIR / R.SUMMARY_JSON).is_file()


def check_inputs(root: Path, dataset: str, config: str, folds: Sequence[int | str]) -> str:
    """Dataset, plans, splits and preprocessed cases present: fail once, before any combination starts."""
    from salseg.dataset import resolve_dataset
    from salseg.train.config import load_plans_configuration
    from salseg.train.trainer import check_preprocessed, fold_cases

    ds = resolve_dataset(root, dataset)
    plans, conf = load_plans_configuration(R.plans_file(root, ds), config)
    cases: set[str] = set()
    for f in folds:
        train_ids, val_ids = fold_cases(root, ds, f, plans)
        cases.update(train_ids + val_ids)
    check_preprocessed(R.config_dir(root, ds, str(conf["data_identifier"])), sorted(cases))
    return ds


def module_options(module: str, options: dict) -> dict:
    """The grid's options for one combination: an option that some module declares (e.g. ``features`` of the
    slice heads) goes only to the modules that declare it; every other option goes to every combination."""
    from salseg.nets import registry

    declared = {k for m in registry.modules().values() for k in m.options}
    own = set(registry.get_module(module).options)
    return {k: v for k, v in options.items() if k not in declared or k in own}


def _train_one(root: str, dataset: str, combo: Combination, kwargs: dict, progress: Progress | None = None) -> str:
    from salseg.train import train

    opts = dict(kwargs)
    options = module_options(combo.module, opts.pop("options", None) or {})
    if options:
        opts["options"] = options
    return str(train(root, dataset, combo.network, combo.module, config=combo.config, fold=combo.fold,
                     position=combo.position or "head", progress=progress, **opts))


def run_grid(root, dataset: str, networks: Sequence[str], modules: Sequence[str], *, config: str = "2d",
             folds: Sequence[int | str] = (0,), executor: str = "local", address: str | None = None,
             train_kwargs: dict | None = None, ray_num_cpus: int | None = None,
             progress: Progress | None = None, positions: Sequence[str | None] = (None,)) -> GridResult:
    """Train every valid, unfinished combination; ``train_kwargs`` go to :func:`salseg.train.train` (epochs,
    iters_per_epoch, width, seed, device, ...)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose {' or '.join(EXECUTORS)}")
    if address and executor != "ray":
        raise ConfigError("--address is for the Ray executor; add --executor ray")
    root = R.resolve_root(root)
    combos, invalid = plan_grid(networks, modules, folds, config, positions)
    for inv in invalid:
        log.warning("skipping %s + %s: %s", inv["network"], inv["module"], inv["reason"])
    if not combos:
        raise ConfigError("no valid network + module combination to run: "
                          + "; ".join(f"{i['network']} + {i['module']}: {i['reason']}" for i in invalid))
    ds = check_inputs(root, dataset, config, folds)
    res = GridResult(ds, combos, invalid)
    todo = []
    for c in combos:
        if is_finished(c.fold_dir(root, ds)):
            res.skipped.append(c)
        else:
            todo.append(c)
    if res.skipped:
        log.info("%d finished combination(s) skipped: %s", len(res.skipped), ", ".join(c.label for c in res.skipped))
    t0 = time.perf_counter()
    if todo:
        runner = _run_local if executor == "local" else _run_ray
        runner(str(root), ds, todo, dict(train_kwargs or {}), res, progress, address=address, num_cpus=ray_num_cpus)
    res.seconds = time.perf_counter() - t0
    return res


def _run_local(root, ds, todo, kwargs, res, progress, **_):
    for i, c in enumerate(todo):
        if progress:
            progress("benchmark grid", i, len(todo))
        log.info("training %s (%d/%d)", c.label, i + 1, len(todo))
        try:
            _train_one(root, ds, c, kwargs, progress)
            res.trained.append(c)
        except SalsegError as e:
            log.error("%s failed: %s", c.label, e)
            res.failed.append({"combination": c, "error": str(e)})
    if progress:
        progress("benchmark grid", len(todo), len(todo))


def _ray_task(root: str, dataset: str, combo: dict, kwargs: dict) -> str:
    """Runs on a Ray worker: the same train function as the local executor."""
    return _train_one(root, dataset, Combination(**combo), kwargs)


def _run_ray(root, ds, todo, kwargs, res, progress, *, address=None, num_cpus=None):
    try:
        import ray
    except ImportError:
        raise SalsegError("the Ray executor needs Ray: pip install 'salseg[ray]' (or pip install ray)") from None
    import torch

    started = False
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise SalsegError(f"could not start or join Ray{f' at {address}' if address else ''}: {e}") from None
        started = True
    try:
        task = ray.remote(num_gpus=1 if torch.cuda.is_available() else 0, num_cpus=1)(_ray_task)
        refs = {task.remote(root, ds, asdict(c), kwargs): c for c in todo}
        pending, done = list(refs), 0
        if progress:
            progress("benchmark grid (ray)", 0, len(todo))
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                c = refs[ref]
                try:
                    ray.get(ref)
                    res.trained.append(c)
                except Exception as e:  # RayTaskError wraps the task's exception; keep its message
                    cause = getattr(e, "cause", None) or e
                    log.error("%s failed on Ray: %s", c.label, cause)
                    res.failed.append({"combination": c, "error": str(cause)})
                done += 1
                if progress:
                    progress("benchmark grid (ray)", done, len(todo))
        order = {c: i for i, c in enumerate(todo)}
        res.trained.sort(key=order.__getitem__)
    finally:
        if started:
            ray.shutdown()


def bench_run(root, dataset: str, networks: Sequence[str], modules: Sequence[str], *, config: str = "2d",
              folds: Sequence[int | str] = (0,), name: str | None = None, executor: str = "local",
              address: str | None = None, epochs: int | None = None, iters_per_epoch: int | None = None,
              width: int | None = None, seed: int | None = None, device: str = "auto",
              train_kwargs: dict | None = None, efficiency: bool = True, efficiency_repeats: int = 3,
              ray_num_cpus: int | None = None, progress: Progress | None = None,
              positions: Sequence[str | None] = (None,)) -> dict:
    """Run the grid (slice modules once per module position in ``positions``), then collect ``results.csv``,
    ``table.md`` and ``report.html`` into ``bench/<name>/``.

    Returns ``{"grid": GridResult, "bench_dir", "files": {...}, "table_md", "rows", "stats", "efficiency"}``.
    """
    from salseg.bench.report import write_bench

    kwargs = {k: v for k, v in dict(epochs=epochs, iters_per_epoch=iters_per_epoch, width=width, seed=seed,
                                     device=device).items() if v is not None}
    kwargs.update(train_kwargs or {})
    root = R.resolve_root(root)
    grid = run_grid(root, dataset, networks, modules, config=config, folds=folds, executor=executor,
                    address=address, train_kwargs=kwargs, ray_num_cpus=ray_num_cpus, progress=progress,
                    positions=positions)
    name = name or f"{grid.dataset}__{config}"
    out = write_bench(root, grid, name, efficiency=efficiency, efficiency_repeats=efficiency_repeats,
                      progress=progress)
    out["grid"] = grid
    return out
