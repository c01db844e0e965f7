"""Benchmark grids: network x module x fold x seed combinations, trained locally (in-process, one after the other)
or as Ray tasks (one GPU each when CUDA is present, else one CPU), then collected into ``bench/<name>/``.

- invalid network + module pairs (``salseg.nets.invalid_reason``) are reported and skipped;
- a combination whose fold folder (``fold_<f>`` for seed 0, ``fold_<f>_seed<S>`` otherwise) already holds
  ``checkpoint_final.pt`` and ``validation/summary.json`` is finished and skipped, so an interrupted grid resumes
  where it stopped;
- every arm gets the same deep-supervision setting; arms of one network trained by different recipes (protocol
  fingerprints in config.json) are refused before anything is compared (salseg.bench.protocols);
- a combination that fails -- with any exception, or a Ray worker that dies -- is recorded with its message; the
  others still run and are collected. Ctrl-C (KeyboardInterrupt) still ends the grid.

Ray is imported only for ``executor="ray"`` (extra ``ray``). With ``address`` the grid joins that cluster
(``ray.init(address=...)``; salseg must be installed on every node and the data root visible at the same path);
without, a local Ray is started and shut down afterwards. A Ray session that is already initialised is reused.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from salseg import results as R
from salseg.bench.collect import STACK, is_finished
from salseg.bench.options import module_options
from salseg.errors import ConfigError, RunFailed, SalsegError

if TYPE_CHECKING:
    from salseg.train.settings import TrainSettings

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
    seed: int = 0

    @property
    def label(self) -> str:
        return (f"{R.experiment_name(self.network, self.module, self.config, self.position)}/"
                f"{R.fold_name(self.fold, self.seed)}")

    def fold_dir(self, root: Path, dataset: str) -> Path:
        return R.fold_dir(root, dataset, self.network, self.module, self.config, self.fold, self.position,
                          seed=self.seed)

    def experiment_dir(self, root: Path, dataset: str) -> Path:
        return R.experiment_dir(root, dataset, self.network, self.module, self.config, self.position)


@dataclass
class GridResult:
    dataset: str
    combinations: list[Combination]                              # every valid combination (trained or not)
    invalid: list[dict] = field(default_factory=list)             # {network, module, reason}
    skipped: list[Combination] = field(default_factory=list)      # already finished before this run
    trained: list[Combination] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)              # {combination, error, type}
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "combinations": [c.label for c in self.combinations],
                "invalid": self.invalid, "skipped": [c.label for c in self.skipped],
                "trained": [c.label for c in self.trained],
                "failed": [{"combination": f["combination"].label, "error": f["error"], "type": f.get("type")}
                           for f in self.failed],
                "seconds": self.seconds}


def failure_message(e: BaseException) -> str:
    """A failed arm's message: a SalsegError's own text, else ``<ExceptionType>: <text>``."""
    text = str(e).strip()
    if isinstance(e, SalsegError):
        return text
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _unique(items: Sequence, what: str) -> list:
    items = list(items)
    if not items:
        raise ConfigError(f"give at least one {what}")
    return list(dict.fromkeys(items))


def check_seeds(seeds: Sequence[int]) -> list[int]:
    seeds = _unique(seeds, "seed")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ConfigError(f"a seed must be an integer >= 0, got {s!r}")
    return seeds


def plan_grid(networks: Sequence[str], modules: Sequence[str], folds: Sequence[int | str], config: str,
              positions: Sequence[str | None] = (None,), seeds: Sequence[int] = (0,)
              ) -> tuple[list[Combination], list[dict]]:
    """(valid combinations in network, module, position, fold, seed order; invalid pairs with their reason).
    Slice modules run once per position; ``none``, ``stack`` and attention modules once."""
    from salseg.nets import registry
    from salseg.run.config import CONFIG_DIMS

    if config not in CONFIG_DIMS:
        raise ConfigError(f"unknown configuration {config!r}; choose one of {', '.join(CONFIG_DIMS)}")
    dim = CONFIG_DIMS[config]
    networks, modules = _unique(networks, "network"), _unique(modules, "module")
    folds, positions = _unique(folds, "fold"), _unique(positions, "module position")
    seeds = check_seeds(seeds)
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
            with_positions = registry.get_module(m).kind == "slice" and m != STACK
            for p in positions if with_positions else (None,):
                combos.extend(Combination(n, m, config, f, p, s) for f in folds for s in seeds)
    return combos, invalid


def check_inputs(root: Path, dataset: str, config: str, folds: Sequence[int | str]) -> str:
    """Dataset, plans, splits and preprocessed cases present: fail once, before any combination starts."""
    from salseg.dataset import resolve_dataset
    from salseg.plans import read_plans
    from salseg.plan.splits import fold_cases
    from salseg.preprocess.freshness import check_preprocessed

    ds = resolve_dataset(root, dataset)
    configuration = read_plans(R.plans_file(root, ds)).configuration(config)
    cases: set[str] = set()
    for f in folds:
        train_ids, val_ids = fold_cases(root, ds, f)
        cases.update(train_ids + val_ids)
    check_preprocessed(R.config_dir(root, ds, configuration.data_identifier), sorted(cases))
    return ds


def _train_one(root: str, dataset: str, combo: Combination, settings: TrainSettings,
               progress: Progress | None = None) -> str:
    """Train one combination: the grid's settings with the combination's network, module, configuration, fold,
    position and seed (never a grid-wide seed), and only the options that belong to its module."""
    from salseg.train import train

    run = settings.replace(dataset=dataset, network=combo.network, module=combo.module, config=combo.config,
                           fold=combo.fold, position=combo.position or "head", seed=combo.seed,
                           options=module_options(combo.module, settings.options))
    # only folds that are not one finished run come here; one whose files disagree is replaced when this finishes
    out = Path(train(root, run, progress=progress, overwrite=True))
    expected = combo.fold_dir(Path(root), dataset)
    if out.resolve() != expected.resolve():  # e.g. a trainer that does not keep seeds apart
        raise RunFailed(f"{combo.label}: the trainer wrote {out}, not {expected}")
    return str(out)


def run_grid(root, dataset: str, networks: Sequence[str], modules: Sequence[str], *, config: str = "2d",
             folds: Sequence[int | str] = (0,), executor: str = "local", address: str | None = None,
             settings: TrainSettings | None = None, ray_num_cpus: int | None = None,
             progress: Progress | None = None, positions: Sequence[str | None] = (None,),
             seeds: Sequence[int] = (0,), allow_mixed_protocol: bool = False) -> GridResult:
    """Train every valid, unfinished combination with ``settings`` (salseg.train.settings: epochs, device, deep
    supervision, ...; each combination sets its own network, module, fold, position and seed). The arms already
    finished are protocol-checked before anything trains."""
    from salseg.bench.protocols import check_protocols

    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose {' or '.join(EXECUTORS)}")
    if address and executor != "ray":
        raise ConfigError("--address is for the Ray executor; add --executor ray")
    root = R.resolve_root(root)
    combos, invalid = plan_grid(networks, modules, folds, config, positions, seeds)
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
        check_protocols(root, ds, res.skipped, allow_mixed=allow_mixed_protocol)  # refuse before training more

    def check(done: Combination) -> None:
        """After each trained arm: its recipe against the finished arms of its network (stops a mixed grid early)."""
        same = [c for c in res.skipped + res.trained if c.network == done.network]
        check_protocols(root, ds, same, allow_mixed=allow_mixed_protocol)
    t0 = time.perf_counter()
    if todo:
        from salseg.train.settings import TrainSettings

        runner = _run_local if executor == "local" else _run_ray
        runner(str(root), ds, todo, settings or TrainSettings(), res, progress, address=address,
               num_cpus=ray_num_cpus, check=check)
    res.seconds = time.perf_counter() - t0
    return res


def _record_failure(res: GridResult, c: Combination, e: BaseException, where: str = "") -> None:
    msg = failure_message(e)
    log.error("%s failed%s: %s", c.label, where, msg)
    if not isinstance(e, SalsegError):
        log.debug("%s: traceback of the failure", c.label, exc_info=e)  # shown with salseg -v
    res.failed.append({"combination": c, "error": msg, "type": type(e).__name__})


def _free_accelerator() -> None:
    """After a failed arm (e.g. CUDA out of memory): release what it held before the next arm starts."""
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # never let cleanup hide the next arm
        pass


def _run_local(root, ds, todo, settings, res, progress, check=None, **_):
    for i, c in enumerate(todo):
        if progress:
            progress("benchmark grid", i, len(todo))
        log.info("training %s (%d/%d)", c.label, i + 1, len(todo))
        try:
            _train_one(root, ds, c, settings, progress)
            res.trained.append(c)
        except Exception as e:  # any failure of one arm; KeyboardInterrupt/SystemExit still end the grid
            _record_failure(res, c, e)
            _free_accelerator()
            continue
        if check:
            check(c)  # a recipe that differs from the finished arms' ends the grid here (ConfigError)
    if progress:
        progress("benchmark grid", len(todo), len(todo))


def _ray_task(root: str, dataset: str, combo: dict, settings: TrainSettings) -> str:
    """Runs on a Ray worker: the same train function as the local executor."""
    return _train_one(root, dataset, Combination(**combo), settings)


def _run_ray(root, ds, todo, settings, res, progress, *, address=None, num_cpus=None, task_fn=None, check=None):
    import torch

    from salseg.parallel import ray_failure, ray_session

    with ray_session(address, num_cpus) as ray:
        # no retries: a crashed arm is reported (re-running the grid retries only what is unfinished)
        task = ray.remote(num_gpus=1 if torch.cuda.is_available() else 0, num_cpus=1, max_retries=0)(
            task_fn or _ray_task)
        refs = {task.remote(root, ds, asdict(c), settings): c for c in todo}
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
                except Exception as e:  # the task raised (RayTaskError) or its worker died (ray.exceptions.*)
                    _record_failure(res, c, ray_failure(e), " on Ray")
                else:
                    try:
                        if check:
                            check(c)
                    except SalsegError:  # a mixed recipe: stop what is still queued or running
                        for r in pending:
                            ray.cancel(r, force=True)
                        raise
                done += 1
                if progress:
                    progress("benchmark grid (ray)", done, len(todo))
        order = {c: i for i, c in enumerate(todo)}
        res.trained.sort(key=order.__getitem__)


def bench_run(root, dataset: str, networks: Sequence[str], modules: Sequence[str], *, config: str = "2d",
              folds: Sequence[int | str] = (0,), name: str | None = None, executor: str = "local",
              address: str | None = None, settings: TrainSettings | None = None, seeds: Sequence[int] = (0,),
              allow_mixed_protocol: bool = False, efficiency: bool = True, efficiency_repeats: int = 3,
              ray_num_cpus: int | None = None, progress: Progress | None = None,
              positions: Sequence[str | None] = (None,)) -> dict:
    """Run the grid (slice modules once per module position in ``positions``, every combination once per seed in
    ``seeds``), then collect ``results.csv``, ``table.md``, ``report.html`` and ``bench.json`` into
    ``bench/<name>/``. ``settings`` (salseg.train.settings; its deep supervision, epochs, device, ...) go to every
    arm alike. Arms of one network trained by different recipes are refused (ConfigError) unless
    ``allow_mixed_protocol``.

    Returns ``{"grid": GridResult, "bench_dir", "files": {...}, "table_md", "rows", "stats", "efficiency",
    "protocol"}``; ``grid.failed`` lists the arms that failed (the CLI exits 1).
    """
    from salseg.bench.report import check_name, write_bench

    if name is not None:
        check_name(name)  # before hours of training, not after
    root = R.resolve_root(root)
    grid = run_grid(root, dataset, networks, modules, config=config, folds=folds, executor=executor,
                    address=address, settings=settings, ray_num_cpus=ray_num_cpus, progress=progress,
                    positions=positions, seeds=seeds, allow_mixed_protocol=allow_mixed_protocol)
    name = name or f"{grid.dataset}__{config}"
    out = write_bench(root, grid, name, efficiency=efficiency, efficiency_repeats=efficiency_repeats,
                      progress=progress, allow_mixed_protocol=allow_mixed_protocol)
    out["grid"] = grid
    return out
