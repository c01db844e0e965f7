"""Predicting a cohort at scale: a deterministic share of the cases (``--num-parts N --part-id I``), the cases
whose outputs are already complete (``--continue``), and cases spread over a Ray cluster (``--executor ray``)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from salseg.errors import ConfigError

EXECUTORS = ("local", "ray")


def part_of(cases: list, num_parts: int = 1, part_id: int = 0) -> list:
    """Part ``part_id`` of ``num_parts``: every ``num_parts``-th case in case-id order, starting at ``part_id``;
    parts 0..N-1 together hold every case exactly once, whatever the order the files were listed in."""
    if num_parts < 1:
        raise ConfigError(f"--num-parts must be >= 1, got {num_parts}")
    if not 0 <= part_id < num_parts:
        raise ConfigError(f"--part-id must be in 0..{num_parts - 1} (--num-parts {num_parts}), got {part_id}")
    return sorted(cases, key=lambda c: c[0])[part_id::num_parts]


def split_finished(cases: list, outputs_of: Callable[[tuple], list[Path]]) -> tuple[list, list]:
    """(cases still to predict, cases whose every output file exists). Outputs are written atomically, so a file
    that exists is complete; a case with only some of its files (a kill between two of them) is predicted again."""
    todo, done = [], []
    for case in cases:
        (done if all(p.exists() for p in outputs_of(case)) else todo).append(case)
    return todo, done


def _ray_case(factory, source: dict, case: tuple, out_dir: str, kwargs: dict) -> list[str]:
    """Runs on a Ray worker: rebuild the predictor from its source and predict one case into ``out_dir``."""
    predictor = factory(source)
    return [str(p) for p in predictor._predict_into([case], Path(out_dir), **kwargs)]


def predict_on_ray(factory, source: dict, cases: list, out_dir: Path, kwargs: dict, *, address: str | None = None,
                   num_cpus: int | None = None, progress=None) -> tuple[list[Path], list[tuple[str, str]]]:
    """One Ray task per case (``factory(source)`` rebuilds the model on the worker; the outputs go straight to
    ``out_dir``, atomically). A failed case is recorded and the others finish: returns (written files,
    [(case, error line)])."""
    import torch

    from salseg.parallel import ray_failure, ray_session

    if source is None:
        raise ConfigError("this predictor cannot be rebuilt on a Ray worker (no source); build it with "
                          "Predictor.from_results or Predictor.from_model")
    written, failed = [], []
    with ray_session(address, num_cpus) as ray:
        task = ray.remote(num_gpus=1 if torch.cuda.is_available() else 0, num_cpus=1, max_retries=0)(_ray_case)
        refs = {task.remote(factory, source, case, str(out_dir), kwargs): case for case in cases}
        pending = list(refs)
        if progress:
            progress("predicting cases (ray)", 0, len(cases))
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                try:
                    written += [Path(p) for p in ray.get(ref)]
                except Exception as e:  # the task raised (RayTaskError) or its worker died
                    err = ray_failure(e)
                    line = (str(err).strip().splitlines() or [type(err).__name__])[0]
                    failed.append((refs[ref][0], f"{type(err).__name__}: {line}"))
                if progress:
                    progress("predicting cases (ray)", len(cases) - len(pending), len(cases))
    return sorted(written), sorted(failed)
